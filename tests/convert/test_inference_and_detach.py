"""The IR additions convert relies on: weightless detach/reattach and shape inference written back."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.errors import OnnxGraphError
from onnxgraph.serde.detached import DETACH_THRESHOLD, detach, reattach
from onnxgraph.shape_inference import infer_shapes

HEADER = '<ir_version: 10, opset_import: ["" : 21]>\n'


def _model(model_from_text, rng):
    weights = ", ".join(f"{v:.3f}" for v in rng.standard_normal(32 * 32))
    return model_from_text(
        HEADER + f"g (float[N,32] x, int64[2] shape) => (float[?] y)\n"
        f"<float[32,32] w = {{{weights}}}, float[2] small = {{1, 2}}>\n"
        "{\n  h = MatMul(x, w)\n  y = Reshape(h, shape)\n}"
    )


def test_detach_leaves_large_float_tensors_out_and_reattach_returns_the_same_objects(model_from_text, rng):
    model = _model(model_from_text, rng)
    proto, weights = detach(model)
    by_name = {t.name: t for t in proto.graph.initializer}
    assert by_name["w"].data_location == onnx.TensorProto.EXTERNAL and not by_name["w"].raw_data
    assert by_name["small"].data_location != onnx.TensorProto.EXTERNAL  # under DETACH_THRESHOLD bytes
    assert 32 * 32 * 4 >= DETACH_THRESHOLD > 2 * 4
    back = reattach(proto, weights, like=model)
    assert back.graph.initializers["w"].const_value is model.graph.initializers["w"].const_value
    np.testing.assert_array_equal(back.graph.initializers["small"].const_value.numpy(), [1, 2])


def test_infer_shapes_types_values_and_applies_overrides(model_from_text, rng):
    model = _model(model_from_text, rng)
    infer_shapes(model, {"x": [5, 32]})
    values = {n.outputs[0].name: n.outputs[0] for n in model.graph}
    assert values["h"].shape == (5, 32) and values["h"].elem_type == onnx.TensorProto.FLOAT
    assert model.graph.inputs[0].shape == (5, 32)
    assert model.graph.initializers["w"].shape == (32, 32)  # initializers get their types too


@pytest.mark.parametrize(("shapes", "message"), [({"nope": [1]}, "no input 'nope'"), ({"x": [1]}, "rank 2, not 1")])
def test_infer_shapes_rejects_bad_overrides(model_from_text, rng, shapes, message):
    with pytest.raises(OnnxGraphError, match=message):
        infer_shapes(_model(model_from_text, rng), shapes)


def test_onnxgraph_load_keeps_text_and_binary_apart(tmp_path, model_from_text, rng):
    model = _model(model_from_text, rng)
    onnxgraph.save(model, tmp_path / "m.onnx")
    (tmp_path / "m.onnxtxt").write_bytes((tmp_path / "m.onnx").read_bytes())  # binary under a text name
    with pytest.raises(onnxgraph.ModelLoadError, match="not UTF-8|not valid ONNX text"):
        onnxgraph.load(tmp_path / "m.onnxtxt")
