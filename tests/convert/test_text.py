"""Reading and writing ONNX text (.onnxtxt)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.errors import ModelLoadError

MLP_TEXT = """<ir_version: 10, opset_import: ["" : 21]>
mlp (float[N,64] x) => (float[N,4] y)
<float[4] b = {0.5, -0.5, 1, 2}, float[64,4] w = {WEIGHTS}>
{
   h0 = Identity(x)
   h = MatMul(x, w)
   y = Add(h, b)
}"""


def _mlp(rng) -> onnxgraph.Model:
    weights = ", ".join(f"{v:.4f}" for v in rng.standard_normal(64 * 4))
    return onnxgraph.load(onnx.parser.parse_model(MLP_TEXT.replace("WEIGHTS", weights)))


def test_text_round_trip_puts_large_weights_in_external_data(tmp_path, rng):
    model = _mlp(rng)
    path = tmp_path / "mlp.onnxtxt"
    onnxgraph.save(model, path, size_threshold=1024)
    text = path.read_text()
    assert text.lstrip().startswith("<")  # ONNX text, not protobuf
    assert '"location": "mlp.onnxtxt.data"' in text  # the 1 KiB weight went out...
    assert "{0.5,-0.5,1,2}" in text.replace(" ", "")  # ...the 16-byte bias stayed in the text
    assert os.path.getsize(tmp_path / "mlp.onnxtxt.data") >= 64 * 4 * 4
    loaded = onnxgraph.load(path)
    np.testing.assert_array_equal(
        loaded.graph.initializers["w"].const_value.numpy(), model.graph.initializers["w"].const_value.numpy()
    )
    np.testing.assert_array_equal(loaded.graph.initializers["b"].const_value.numpy(), [0.5, -0.5, 1, 2])
    assert [n.op_type for n in loaded.graph] == ["Identity", "MatMul", "Add"]


def test_text_written_inline_when_asked(tmp_path, rng):
    model = _mlp(rng)
    onnxgraph.save(model, tmp_path / "inline.onnxtxt", external_data=False)
    assert not (tmp_path / "inline.onnxtxt.data").exists()
    loaded = onnxgraph.load(tmp_path / "inline.onnxtxt")
    np.testing.assert_allclose(
        loaded.graph.initializers["w"].const_value.numpy(), model.graph.initializers["w"].const_value.numpy()
    )


def test_text_without_large_tensors_writes_no_data_file(tmp_path):
    text = (
        '<ir_version: 10, opset_import: ["" : 21]>\ng (float[2] x) => (float[2] y) <float[1] b = {1}> { y = Add(x, b) }'
    )
    model = onnxgraph.load(onnx.parser.parse_model(text))
    onnxgraph.save(model, tmp_path / "small.onnxtxt")
    assert sorted(os.listdir(tmp_path)) == ["small.onnxtxt"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<ir_version: 8>\nagraph (float x) => (float y) { y = Relu(x ", "line 2 column"),
        ("not onnx at all", "is not valid ONNX text"),
    ],
)
def test_bad_text_is_a_one_line_load_error(tmp_path, text, expected):
    path = tmp_path / "bad.onnxtxt"
    path.write_text(text)
    with pytest.raises(ModelLoadError) as info:
        onnxgraph.load(path)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(str(path))


def test_text_without_ir_version_gets_the_one_its_opset_needs(tmp_path):
    path = tmp_path / "noir.onnxtxt"
    path.write_text('<opset_import: ["" : 17]>\ng (float[2] x) => (float[2] y) { y = Relu(x) }')
    assert onnxgraph.load(path).ir_version == 8  # onnx's table: opset 17 came with IR 8
