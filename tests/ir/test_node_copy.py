"""``Node.copy``: the one way to clone a node with new inputs (gradient checkpointing's recompute and
the If gradient's branch copies use it). Subgraphs are deep-copied, lists copied, tensors shared."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser

import onnxgraph
from onnxgraph.consistency import use_def_problems
from onnxgraph.runtime.sessions import create_session

IF_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[3] x, bool c) => (float[3] y) {
    w = Constant<value = float[3] {1, 2, 3}>()
    y = If(c) <
        then_branch = then_g () => (float[3] t) { t = Mul(x, w) },
        else_branch = else_g () => (float[3] e) { e = Add(x, w) }
    >
}
"""


def _if_model():
    model = onnxgraph.load(onnx.parser.parse_model(IF_MODEL))
    (node,) = [n for n in model.graph if n.op_type == "If"]
    return model, node


def test_changing_the_copys_subgraph_leaves_the_original_alone():
    model, node = _if_model()
    before = model.to_proto().SerializeToString()
    copy = node.copy(list(node.inputs))
    then_copy = copy.attributes["then_branch"].value
    assert then_copy is not node.attributes["then_branch"].value
    (mul,) = then_copy.nodes
    mul.op_type = "Sub"  # edit the copy's body and its attributes
    copy.attributes["else_branch"].value.name = "renamed"
    assert model.to_proto().SerializeToString() == before
    assert [n.op_type for n in node.attributes["then_branch"].value] == ["Mul"]


def test_a_copy_with_subgraphs_runs_beside_the_original():
    """The copy reads the same outer-scope values (x, w) from its own body: a valid model whose two
    If nodes compute the same thing, on onnxruntime."""
    model, node = _if_model()
    copy = node.copy(list(node.inputs), name="if_copy")
    model.graph.insert_after(node, copy)
    model.graph.outputs.append(copy.outputs[0])
    assert use_def_problems(model) == []
    assert copy.outputs[0].type == node.outputs[0].type and copy.outputs[0].name != node.outputs[0].name
    proto = model.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    x = np.array([1, -2, 3], np.float32)
    for c in (True, False):
        y, y_copy = create_session(proto.SerializeToString()).run(None, {"x": x, "c": np.array(c)})
        np.testing.assert_array_equal(y_copy, y)
        np.testing.assert_array_equal(y, x * [1, 2, 3] if c else x + [1, 2, 3])


def test_lists_are_copied_tensors_shared_and_omitted_outputs_stay_omitted():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3,4] x, float[4] s) => (float[4,3,2] t, float[2,3,4] y, float[2,3,1] r) {
        t = Transpose<perm = [2, 1, 0]>(x)
        y, , r = LayerNormalization(x, s)
    }
    """
    model = onnxgraph.load(onnx.parser.parse_model(text))
    transpose, norm = model.graph.nodes
    transpose.metadata_props["k"] = "v"
    copy = transpose.copy([model.graph.inputs[0]])
    copy.attributes["perm"].value.reverse()
    assert transpose.attr("perm") == [2, 1, 0] and copy.attr("perm") == [0, 1, 2]
    assert copy.metadata_props == {"k": "v"} and copy.metadata_props is not transpose.metadata_props
    assert copy.graph is None and copy.outputs[0].producer() is copy

    assert [v.name for v in norm.outputs] == ["y", "", "r"]
    assert [v.name for v in norm.copy(list(norm.inputs)).outputs] == [None, "", None]  # named on insertion

    constant = onnxgraph.load(
        onnx.parser.parse_model(
            '<ir_version: 8, opset_import: ["" : 17]> g () => (float[2] c) { c = Constant<value = float[2] {1, 2}>() }'
        )
    ).graph.nodes[0]
    assert constant.copy([]).attr("value") is constant.attr("value")  # immutable in the IR: shared
