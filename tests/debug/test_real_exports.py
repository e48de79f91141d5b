"""compare on what torch.onnx.export really produces (tests/debug/data, made by
benchmarks/export_fp16_regression.py): the TorchScript exporter's written-out LayerNorm overflows in
float16 at its Pow; the dynamo exporter's LayerNormalization op does not."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph import renames
from onnxgraph.cli import cli
from onnxgraph.runtime.sessions import create_session

DATA = os.path.join(os.path.dirname(__file__), "data")
EXPORTS = ("layernorm_ts13.onnx", "layernorm_dynamo.onnx")


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def inputs(tmp_path):
    with np.load(os.path.join(DATA, "layernorm_io.npz")) as io:
        np.savez(tmp_path / "x.npz", x=io["x"])
    return str(tmp_path / "x.npz")


@pytest.mark.parametrize("name", EXPORTS)
def test_exports_reproduce_pytorch(name):
    with np.load(os.path.join(DATA, "layernorm_io.npz")) as io:
        (y,) = create_session(os.path.join(DATA, name)).run(None, {"x": io["x"]})
        np.testing.assert_allclose(y, io["y"], rtol=1e-4, atol=1e-4)


# convert keeps a square read by float32 reductions in float32 (no overflow); with ReduceMean off the
# block list the Pow runs in float16 again, as converters that keep only the reductions in float32 make it.
OVERFLOWING = ("--fp16", "--op-block-list", "Range")


def test_torchscript_export_fp16_overflow_found_at_the_pow(tmp_path, inputs):
    fp16 = tmp_path / "fp16.onnx"
    assert _run("convert", os.path.join(DATA, EXPORTS[0]), "-o", str(fp16), *OVERFLOWING).exit_code == 0
    result = _run("compare", os.path.join(DATA, EXPORTS[0]), str(fp16), "--inputs", inputs, "--json")
    data = json.loads(result.stdout)
    first = data["origins"][0]
    assert (first["node_a"], first["op_a"], first["node_b"], first["max_abs"]) == (
        "/norm/Pow",
        "Pow",
        "/norm/Pow",
        "inf",
    )
    upstream = [v for v in data["values"] if v["name"].startswith(("/proj/", "/norm/ReduceMean_output", "/norm/Sub"))]
    assert len(upstream) >= 3 and not any(v["diverged"] for v in upstream)


def test_dynamo_export_fp16_has_no_divergence(tmp_path, inputs):
    fp16 = tmp_path / "fp16.onnx"
    assert _run("convert", os.path.join(DATA, EXPORTS[1]), "-o", str(fp16), "--fp16").exit_code == 0
    result = _run("compare", os.path.join(DATA, EXPORTS[1]), str(fp16), "--inputs", inputs, "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["passed"] and not data["origins"] and data["compared"] == data["total"]


@pytest.mark.parametrize("name", EXPORTS)
def test_optimized_export_matches_value_by_value(tmp_path, name):
    optimized = tmp_path / "opt.onnx"
    assert _run("optimize", os.path.join(DATA, name), "-o", str(optimized)).exit_code == 0
    result = _run("compare", os.path.join(DATA, name), str(optimized), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["passed"] and not any(v["diverged"] for v in data["values"])
    renamed = renames.read(onnxgraph.load(optimized))
    compared = {v["name"]: v["name_b"] for v in data["values"]}
    assert {k: compared.get(k) for k in renamed} == renamed
    if name == EXPORTS[0]:  # the LayerNorm's Mul by ones and Add of zeros are gone: their values live on
        assert renamed == {"/norm/Mul_output_0": "/norm/Div_output_0", "/norm/Add_1_output_0": "/norm/Div_output_0"}


def test_reduce_fp16_export_against_reference_keeps_the_variance_reduction(tmp_path, inputs):
    """onnx.reference computes float16 in float16 (the float16 ReduceMean of the squares overflows);
    onnxruntime's CPU provider in float32 between Casts."""
    fp16, small = tmp_path / "fp16.onnx", tmp_path / "small.onnx"
    assert _run("convert", os.path.join(DATA, EXPORTS[0]), "-o", str(fp16), *OVERFLOWING).exit_code == 0
    with np.load(inputs) as io:
        np.savez(tmp_path / "x16.npz", x=io["x"].astype(np.float16))
    result = _run(
        "reduce",
        str(fp16),
        "--differs-from-reference",
        "-o",
        str(small),
        "--inputs",
        str(tmp_path / "x16.npz"),
        "--json",
    )
    assert result.exit_code == 0, result.output
    kept = [(n["op_type"], n["name"]) for n in json.loads(result.stdout)["kept"]]
    assert ("ReduceMean", "/norm/ReduceMean_1") in kept and len(kept) <= 3
