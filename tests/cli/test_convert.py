"""``onnxgraph convert`` end to end: outputs load where they should, errors are one line, exit 2."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.runtime.compare import default_tolerance
from onnxgraph.runtime.sessions import create_session
from onnxgraph.serde import fileio


def _weights(rng, n: int) -> str:
    return ", ".join(f"{v:.5f}" for v in rng.standard_normal(n))


@pytest.fixture
def newest_model(tmp_path) -> str:
    """A model as onnx 1.23 writes it: IR 14 and opset 28, which onnxruntime 1.31 refuses to load."""
    rng = np.random.default_rng(0)
    text = (
        f'<ir_version: 14, opset_import: ["" : 28]>\n'
        f"g (float[N,32] x) => (float[N,32] y)\n"
        f"<float[32,32] w = {{{_weights(rng, 1024)}}}, float[32] s = {{{_weights(rng, 32)}}},"
        f" float[32] b = {{{_weights(rng, 32)}}}>\n"
        "{\n  h = MatMul(x, w)\n  g = Gelu(h)\n  y = LayerNormalization<axis=-1>(g, s, b)\n}"
    )
    path = tmp_path / "newest.onnx"
    onnx.save(onnx.parser.parse_model(text), path)
    return str(path)


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["convert", *args])


def _reference(path: str, feeds: dict) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(path).run(None, feeds)


def test_target_ort_makes_the_installed_onnxruntime_load_the_model(newest_model, tmp_path):
    with pytest.raises(Exception, match="IR version: 14"):
        create_session(newest_model)
    out = str(tmp_path / "ort131.onnx")
    result = _invoke(newest_model, "-o", out, "--target-ort", "1.31", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ir_version"] == {"from": 14, "to": 13}
    assert report["opset"] == {"from": 28, "to": 26}
    assert report["verification"]["passed"]
    x = np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32)
    actual = create_session(out).run(None, {"x": x})
    np.testing.assert_allclose(actual[0], _reference(newest_model, {"x": x})[0], rtol=1e-4, atol=1e-5)


def test_target_ort_for_an_older_release_rewrites_new_ops(newest_model, tmp_path):
    out = str(tmp_path / "ort114.onnx")
    result = _invoke(newest_model, "-o", out, "--target-ort", "1.14")
    assert result.exit_code == 0, result.output
    proto = onnx.load(out)
    assert (proto.ir_version, proto.opset_import[0].version) == (8, 18)
    assert not {"Gelu"} & {n.op_type for n in proto.graph.node}  # Gelu came with opset 20
    x = np.ones((2, 32), np.float32)
    np.testing.assert_allclose(
        create_session(out).run(None, {"x": x})[0], _reference(newest_model, {"x": x})[0], rtol=1e-4, atol=1e-5
    )


def test_fp16_with_keep_io_types_is_verified_and_loads(newest_model, tmp_path):
    out = str(tmp_path / "half.onnx")
    result = _invoke(newest_model, "-o", out, "--target-ort", "1.31", "--fp16", "--keep-io-types", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"]["dtype"] == "float16"
    assert report["verification"]["engine"] == "onnxruntime" and report["verification"]["passed"]
    proto = onnx.load(out)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT16}
    x = np.random.default_rng(2).standard_normal((4, 32)).astype(np.float32)
    np.testing.assert_allclose(
        create_session(out).run(None, {"x": x})[0],
        _reference(newest_model, {"x": x})[0],
        *default_tolerance(np.float16),
    )


def test_human_output_names_the_changes(newest_model, tmp_path):
    result = _invoke(newest_model, "-o", str(tmp_path / "o.onnx"), "--opset", "17", "--ir-version", "8")
    assert result.exit_code == 0, result.output
    assert "opset 28 -> 17" in result.stdout and "IR version 14 -> 8" in result.stdout
    assert "Gelu" in result.stdout


def test_text_output_and_input(newest_model, tmp_path):
    out = str(tmp_path / "m.onnxtxt")
    assert _invoke(newest_model, "-o", out, "--target-ort", "1.31").exit_code == 0
    assert open(out).read().lstrip().startswith("<")
    assert os.path.exists(out + ".data")  # the 4 KiB weight is not in the text
    back = str(tmp_path / "back.onnx")
    result = _invoke(out, "-o", back)
    assert result.exit_code == 0, result.output
    info = CliRunner().invoke(cli, ["info", out, "--json"])
    assert info.exit_code == 0 and json.loads(info.stdout)["opset_imports"] == {"ai.onnx": 26}


def test_external_data_split_by_threshold_and_inlined_back(newest_model, tmp_path):
    ext = str(tmp_path / "ext.onnx")
    assert _invoke(newest_model, "-o", ext, "--external-data", "--size-threshold", "1000").exit_code == 0
    proto = onnx.load(ext, load_external_data=False)
    external = {t.name for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert external == {"w"}  # 4096 bytes; the 128-byte s and b stay inline
    inline = str(tmp_path / "inline.onnx")
    assert _invoke(ext, "-o", inline, "--inline-data").exit_code == 0
    assert not os.path.exists(inline + ".data")
    reloaded = onnx.load(inline)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in reloaded.graph.initializer)
    np.testing.assert_array_equal(
        onnx.numpy_helper.to_array(reloaded.graph.initializer[0]),
        onnx.numpy_helper.to_array(onnx.load(newest_model).graph.initializer[0]),
    )


def test_models_over_the_protobuf_limit_go_to_external_data(newest_model, tmp_path, monkeypatch):
    # Stand-in for 2 GB: every model with more than 2 KiB of tensors is "too big" to inline.
    monkeypatch.setattr(fileio, "PROTOBUF_LIMIT", 2048)
    monkeypatch.setattr(fileio, "_HEADROOM", 0)
    too_big = _invoke(newest_model, "-o", str(tmp_path / "inline.onnx"), "--fp16", "--inline-data")
    assert too_big.exit_code == 2 and "2 GB" in too_big.stderr
    assert sorted(os.listdir(tmp_path)) == ["newest.onnx"]  # nothing partial was written
    out = str(tmp_path / "big.onnx")
    result = _invoke(newest_model, "-o", out, "--target-ort", "1.31", "--fp16")
    assert result.exit_code == 0, result.output
    assert os.path.getsize(out + ".data") >= 32 * 32 * 2
    x = np.ones((1, 32), np.float16)
    assert create_session(out).run(None, {"x": x})[0].dtype == np.float16


def test_verification_failure_exits_1_and_writes_nothing(tmp_path):
    path = tmp_path / "scale.onnx"
    onnx.save(
        onnx.parser.parse_model(
            '<ir_version: 10, opset_import: ["" : 21]>\n'
            "g (float[4] x) => (float[4] y) <float[1] big = {100000}> { y = Mul(x, big) }"
        ),
        path,
    )
    out = tmp_path / "half.onnx"
    result = _invoke(str(path), "-o", str(out), "--fp16")
    assert result.exit_code == 1
    warning, failure = result.stderr.splitlines()
    assert warning == "warning: tensor 'big': 1 value(s) outside the float16 range clamped to ±65504"
    assert failure.startswith("failed: output 'y' is ")
    assert "off the original (relative L2 error; limit 1.00%)" in failure
    assert "--keep-io-types" in failure and "--op-block-list" in failure and "--no-verify" in failure
    assert not out.exists()
    assert _invoke(str(path), "-o", str(out), "--fp16", "--no-verify").exit_code == 0
    assert out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target-ort", "1.x"], "not an onnxruntime version"),
        (["--opset", "21", "--target-ort", "1.14"], "newer than onnxruntime 1.14"),
        (["--opset", "99"], "out of range"),
        (["--ir-version", "3"], "IR version 3 is too old"),
        (["--ir-version", "99"], "IR version 99 is newer than onnx"),
        (["--external-data", "--inline-data"], "exclude each other"),
        (["--keep-io-types"], "need --fp16 or --bf16"),
        (["--size-threshold", "10"], "needs --external-data"),
        (["--fp16", "--bf16"], "exclude each other"),
    ],
)
def test_bad_options_are_one_line_errors_with_exit_2(newest_model, tmp_path, args, message):
    out = tmp_path / "out.onnx"
    result = _invoke(newest_model, "-o", str(out), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_unconvertible_ops_are_listed(tmp_path):
    path = tmp_path / "attn.onnx"
    onnx.save(
        onnx.parser.parse_model(
            '<ir_version: 10, opset_import: ["" : 23]>\n'
            "g (float[1,2,4,8] q) => (float[1,2,4,8] y) { y = Attention(q, q, q) }"
        ),
        path,
    )
    result = _invoke(str(path), "-o", str(tmp_path / "o.onnx"), "--opset", "21")
    assert result.exit_code == 2
    assert "cannot convert opset 23 to 21: Attention" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


def test_refuses_to_overwrite_the_input(newest_model):
    before = open(newest_model, "rb").read()
    result = _invoke(newest_model, "-o", newest_model, "--fp16")
    assert result.exit_code == 2 and "refusing to overwrite" in result.stderr
    assert open(newest_model, "rb").read() == before
    result = _invoke(newest_model, "-o", newest_model, "--fp16", "--overwrite")
    assert result.exit_code == 0, result.output
    assert open(newest_model, "rb").read() != before


def test_missing_model_is_a_one_line_error(tmp_path):
    result = _invoke(str(tmp_path / "nope.onnx"), "-o", str(tmp_path / "o.onnx"))
    assert result.exit_code == 2 and "no such file" in result.stderr


def test_library_reads_every_tensor_once_detached(newest_model):
    """Opset conversion runs the converter on a weightless copy: the weights are the same objects."""
    from onnxgraph.convert.opset import convert_opset

    model = onnxgraph.load(newest_model)
    before = model.graph.initializers["w"].const_value
    converted, _ = convert_opset(model, 21)
    assert converted.graph.initializers["w"].const_value is before


def test_fp16_of_an_external_data_model_keeps_its_weights_external(tmp_path):
    """Converted weights of a model that kept them in external data go to OUT.data, not inline."""
    rng = np.random.default_rng(0)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 64])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 64])],
        [onnx.numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32) * 0.1, "w")],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    src = tmp_path / "m.onnx"
    onnx.save(model, src, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    out = tmp_path / "o.onnx"
    result = CliRunner().invoke(cli, ["convert", str(src), "-o", str(out), "--fp16"])
    assert result.exit_code == 0, result.output
    written = onnx.load(str(out), load_external_data=False)
    (w,) = written.graph.initializer
    assert w.data_type == onnx.TensorProto.FLOAT16 and w.data_location == onnx.TensorProto.EXTERNAL
    assert os.path.getsize(tmp_path / "o.onnx.data") == 64 * 64 * 2
    x = rng.standard_normal((3, 64)).astype(np.float32)
    want = create_session(str(src)).run(None, {"x": x})[0]
    got = create_session(str(out)).run(None, {"x": x.astype(np.float16)})[0]
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-2, atol=2e-2)
