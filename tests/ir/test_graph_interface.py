"""Graph inputs and outputs are guarded containers, and names set on values are claimed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import parser

import onnxgraph
from onnxgraph import GraphError, Node, Value, types
from onnxgraph.consistency import use_def_problems
from onnxgraph.graph import Graph
from onnxgraph.optimizers.utils import legacy_initializer_inputs_as_constants
from onnxgraph.runtime.sessions import create_session

F = onnx.TensorProto.FLOAT


def _model() -> onnxgraph.Model:
    return onnxgraph.from_proto(
        parser.parse_model(
            """<ir_version: 8, opset_import: ["" : 17]>
            g (float[4] x, float[4] y) => (float[4] z) {
                a = Relu(x)
                z = Add(a, y)
            }"""
        )
    )


def _value(name: str | None = None) -> Value:
    return Value(name, types.tensor_type(F, (4,)))


def test_a_name_set_on_a_value_is_never_handed_out_again():
    graph = _model().graph
    assert graph.fresh_name("t") == "t"  # the name authority now exists
    a = graph.nodes[0].outputs[0]
    a.name = "picked"
    assert graph.fresh_name("picked") == "picked_1"
    assert use_def_problems(graph) == []


def test_names_inside_an_attached_subgraph_are_claimed():
    graph = _model().graph
    graph.fresh_name("t")
    body = Graph("then")
    inner = body.add_input(_value("inner_in"))
    node = Node("", "Identity", (inner,), outputs=[Value("inner_out")])
    body.append(node)
    body.outputs.append(node.outputs[0])
    graph.append(Node("", "If", (graph.inputs[0],), {"then_branch": body, "else_branch": Graph("e")}))
    assert graph.fresh_name("inner_out") == "inner_out_1"
    assert graph.fresh_name("inner_in") == "inner_in_1"


def test_appending_an_input_makes_it_one():
    graph = _model().graph
    w = _value("w")
    graph.inputs.append(w)
    assert w.is_graph_input() and w.graph is graph and w in graph.inputs
    assert graph.fresh_name("w") == "w_1"
    assert use_def_problems(graph) == []


def test_removing_and_replacing_inputs_updates_the_values():
    graph = _model().graph
    x, y = graph.inputs
    w = _value("w")
    graph.inputs[1] = w
    assert not y.is_graph_input() and y.graph is None
    assert w.is_graph_input() and graph.inputs == [x, w]
    graph.inputs.remove(w)
    assert not w.is_graph_input()
    graph.inputs.insert(0, y)
    graph.inputs[:] = [x, y]
    assert x.is_graph_input() and y.is_graph_input() and graph.inputs == [x, y]
    assert use_def_problems(graph) == []
    graph.inputs.clear()
    assert not x.is_graph_input() and len(graph.inputs) == 0
    # x and y are still read: the graph now reads values nothing defines, and the check says so
    assert sum("nothing in its scope defines" in p for p in use_def_problems(graph)) == 2


def test_unnamed_inputs_get_fresh_names():
    graph = _model().graph
    value = _value()
    graph.inputs.append(value)
    assert value.name == "input" and value.is_graph_input()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda g: g.inputs[0], "already an input"),
        (lambda g: g.nodes[0].outputs[0], "is written by"),
        (lambda g: Graph("other", inputs=[_value("o")]).inputs[0], "belongs to graph 'other'"),
    ],
)
def test_inputs_refuse_what_cannot_be_an_input(make, message):
    graph = _model().graph
    before = graph.inputs.copy()
    with pytest.raises(GraphError, match=message):
        graph.inputs.append(make(graph))
    with pytest.raises(GraphError, match=message):
        graph.inputs[:] = [*before, make(graph)]
    assert graph.inputs == before and all(v.is_graph_input() for v in before)
    assert use_def_problems(graph) == []


def test_inputs_hold_values_only():
    with pytest.raises(TypeError, match="must be Values"):
        _model().graph.inputs.append("x")


def test_outputs_edits_keep_is_graph_output_right():
    graph = _model().graph
    (z,) = graph.outputs
    a = graph.nodes[0].outputs[0]
    graph.outputs.append(a)
    assert a.is_graph_output()
    graph.outputs[0] = a  # listed twice now
    assert not z.is_graph_output() and a.is_graph_output() and graph.outputs == [a, a]
    graph.outputs.pop()
    assert a.is_graph_output()
    graph.outputs = [z]
    assert z.is_graph_output() and not a.is_graph_output()
    assert use_def_problems(graph) == []


def test_use_def_problems_sees_an_output_defined_nowhere_and_a_bypassed_list():
    graph = _model().graph
    graph.outputs.append(_value("ghost"))
    assert any("output 'ghost' is defined nowhere" in p for p in use_def_problems(graph))
    graph = _model().graph
    stray = _value("stray")
    graph.inputs._values.append(stray)  # bypass the container on purpose
    problems = use_def_problems(graph)
    assert any("membership index disagree" in p for p in problems)
    assert any("input 'stray' does not point back" in p for p in problems)


def test_initializers_listed_as_inputs_survive_the_legacy_context():
    """IR<4 models list initializers as inputs; optimizers take them off the list and put them back."""
    proto = parser.parse_model(
        """<ir_version: 3, opset_import: ["" : 9]>
        g (float[2] x, float[2] w) => (float[2] y) { y = Add(x, w) }"""
    )
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.ones(2, np.float32), "w"))
    model = onnxgraph.from_proto(proto)
    w = model.graph.initializers["w"]
    with legacy_initializer_inputs_as_constants(model):
        assert not w.is_graph_input() and w.is_initializer()
        assert use_def_problems(model) == []
    assert w.is_graph_input() and [v.name for v in model.graph.inputs] == ["x", "w"]
    assert use_def_problems(model) == []
    session = create_session(model.to_proto())
    (y,) = session.run(None, {"x": np.full(2, 2, np.float32)})
    np.testing.assert_array_equal(y, [3, 3])


def test_an_initializer_keeps_a_name():
    proto = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) <float[2] w = {1.0, 2.0}> { y = Add(x, w) }"""
    )
    graph = onnxgraph.from_proto(proto).graph
    w = graph.initializers["w"]
    w.name = "weight"
    assert graph.initializers["weight"] is w and "w" not in graph.initializers
    with pytest.raises(ValueError, match="needs a name"):
        w.name = None
    assert w.name == "weight" and use_def_problems(graph) == []
