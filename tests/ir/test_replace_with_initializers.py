"""Graph.replace_with_initializers and export_node (IR helpers added for the optimizer)."""

from __future__ import annotations

import numpy as np
import onnx.parser
import pytest

import onnxgraph
from onnxgraph.serde.exporter import export_node


def _model():
    return onnxgraph.from_proto(
        onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    agraph (float[2] x) => (float[2] y, float[2] s1) <float[4] a = {1.0, 2.0, 3.0, 4.0}> {
        s0, s1 = Split <num_outputs = 2> (a)
        y = Add(x, s0)
    }""")
    )


def test_outputs_become_initializers_keeping_names_readers_and_output_slots():
    model = _model()
    split, add = model.graph.nodes
    s0, s1 = split.outputs
    model.graph.replace_with_initializers(
        split, [onnxgraph.Tensor(np.array([1, 2], np.float32)), onnxgraph.Tensor(np.array([3, 4], np.float32))]
    )
    assert model.graph.nodes == [add]
    assert add.inputs[1] is s0 and s0.is_initializer() and s0.producer() is None
    assert model.graph.outputs[1] is s1 and s1.is_initializer()
    assert s0.shape == (2,) and s1.shape == (2,)
    proto = model.to_proto()
    onnx.checker.check_model(proto)
    assert [t.name for t in proto.graph.initializer] == ["a", "s0", "s1"]


def test_wrong_tensor_count_is_refused():
    model = _model()
    split = model.graph.nodes[0]
    with pytest.raises(ValueError, match="2 outputs"):
        model.graph.replace_with_initializers(split, [onnxgraph.Tensor(np.zeros(2, np.float32))])
    assert split.graph is model.graph


def test_export_node_writes_one_node_proto():
    proto = export_node(_model().graph.nodes[0])
    assert (proto.op_type, list(proto.input), list(proto.output)) == ("Split", ["a"], ["s0", "s1"])
    assert onnx.helper.get_attribute_value(proto.attribute[0]) == 2
