"""annotate_types: the shapes passes read come from onnx shape inference, symbolic dims kept."""

from __future__ import annotations

import numpy as np
import onnx

import onnxgraph
from onnxgraph.builder import OpBuilder
from onnxgraph.shape_inference import annotate_types
from onnxgraph.types import tensor_type

HEADER = '<ir_version: 10, opset_import: ["" : 18]>\n'


def _values(model: onnxgraph.Model) -> dict[str, onnxgraph.Value]:
    return {v.name: v for n in model.graph.all_nodes() for v in n.outputs}


def test_intermediate_values_get_shapes_with_symbolic_dims():
    text = HEADER + (
        "g (float[batch,seq,8] x, bool c) => (float[batch,8,seq] y) {"
        " t = Transpose<perm = [0, 2, 1]>(x)\n r = Relu(t)\n"
        " y = If(c) <then_branch = a () => (float[batch,8,seq] ta) { ta = Neg(r) },"
        " else_branch = b () => (float[batch,8,seq] tb) { tb = Abs(r) }> }"
    )
    model = onnxgraph.from_proto(onnx.parser.parse_model(text))
    assert _values(model)["t"].shape is None
    assert annotate_types(model) >= 2
    values = _values(model)
    assert values["t"].shape == ("batch", 8, "seq") and values["r"].elem_type == onnx.TensorProto.FLOAT


def test_recorded_export_sizes_are_replaced_and_outputs_keep_their_types():
    """A file's value_info may hold the sizes seen at export; passes must see the symbolic shape."""
    text = HEADER + "g (float[N,4] x) => (float[N,4] y) { r = Relu(x)\n y = Neg(r) }"
    model = onnxgraph.from_proto(onnx.parser.parse_model(text))
    relu_out = _values(model)["r"]
    relu_out.type = tensor_type(onnx.TensorProto.FLOAT, (1, 4))
    annotate_types(model)
    assert relu_out.shape == ("N", 4) and model.graph.outputs[0].shape == ("N", 4)


def test_large_initializers_are_read_for_their_type_only():
    graph = onnxgraph.Graph("g", inputs=[onnxgraph.Value("x", tensor_type(onnx.TensorProto.FLOAT, ("N", 512)))])
    op = OpBuilder(graph)
    product = op.MatMul(op.Relu(graph.inputs[0]), op.const(np.zeros((512, 512), np.float32)))
    graph.outputs.append(op.Neg(product))
    model = onnxgraph.Model(graph, ir_version=10, opset_imports={"": 18})
    annotate_types(model)  # the 1 MiB weight is exported without its data
    assert product.shape == ("N", 512)


def test_a_model_inference_rejects_is_left_unannotated():
    text = HEADER + "g (float[N,4] x, float[3,5] w) => (float[N,5] y) { m = MatMul(x, w)\n y = Relu(m) }"
    model = onnxgraph.from_proto(onnx.parser.parse_model(text))
    assert annotate_types(model) == 0
    assert _values(model)["m"].shape is None
