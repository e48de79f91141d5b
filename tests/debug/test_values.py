"""``onnxgraph values`` and the chunked exposure behind it: the same numbers as onnx.reference, in chunks."""

from __future__ import annotations

import model_builders
import numpy as np
import onnx
from click.testing import CliRunner
from onnx.reference import ReferenceEvaluator

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.debug.exposure import Exposer, intermediates


def _model():
    return model_builders.decomposed_layernorm(gain=1.0)


def test_values_match_onnx_reference_and_only_filters(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(_model(), model)
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    out = tmp_path / "values.npz"
    result = CliRunner().invoke(
        cli,
        [
            "values",
            str(model),
            "--inputs",
            str(tmp_path / "x.npz"),
            "-o",
            str(out),
            "--only",
            "ln/*",
            "--only",
            "MatMul",
        ],
    )
    assert result.exit_code == 0, result.output
    names = [v.name for v in intermediates(onnxgraph.load(model))]
    expected = dict(zip(names, ReferenceEvaluator(str(model)).run(names, {"x": x})))
    with np.load(out) as got:
        assert sorted(got.files) == sorted(["x", *names])  # every node is named ln/* or is a MatMul
        for name in names:
            np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-5)
    only = tmp_path / "only.npz"
    assert CliRunner().invoke(cli, ["values", str(model), "-o", str(only), "--only", "sq"]).exit_code == 0
    with np.load(only) as got:
        assert sorted(got.files) == ["sq", "x"]


def test_chunks_split_by_the_byte_budget():
    model = onnxgraph.load(_model())
    feeds = {"x": np.ones((4, 16), np.float32)}
    names = [v.name for v in intermediates(model)]
    small = Exposer(model, chunk_bytes=300)  # a [4,16] float value is 256 bytes: one per chunk
    plan = small.plan(feeds, names)
    assert len(plan) > 5 and [n for chunk in plan for n in chunk] == names
    chunked = {k: v for chunk in small.run(feeds, names) for k, v in chunk.items()}
    whole = next(Exposer(model).run(feeds, names))
    assert chunked.keys() == whole.keys()
    for name in names:
        np.testing.assert_array_equal(chunked[name], whole[name])
