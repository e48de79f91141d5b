"""Use-def chains stay consistent under the mutation API; names stay unique; sorting is stable."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import parser

import onnxgraph
from onnxgraph import GraphError, Node, Value, types
from onnxgraph.builder import OpBuilder
from onnxgraph.runtime.sessions import create_session

F = onnx.TensorProto.FLOAT


def _chain_model() -> onnxgraph.Model:
    return onnxgraph.from_proto(
        parser.parse_model(
            """<ir_version: 8, opset_import: ["" : 17]>
            g (float[N, 4] x) => (float[N, 4] z) {
                a = Relu(x)
                b = Neg(a)
                c = Add(a, b)
                z = Mul(c, a)
            }"""
        )
    )


def _by_output(graph, name):
    return next(n for n in graph if n.outputs[0].name == name)


def test_uses_and_producers_are_recorded_on_import():
    graph = _chain_model().graph
    a = _by_output(graph, "a").outputs[0]
    assert a.producer().op_type == "Relu"
    assert [(n.op_type, i) for n, i in a.uses()] == [("Neg", 0), ("Add", 0), ("Mul", 1)]
    assert graph.inputs[0].uses()[0][0].op_type == "Relu"


def test_replace_all_uses_updates_both_sides():
    graph = _chain_model().graph
    a = _by_output(graph, "a").outputs[0]
    x = graph.inputs[0]
    a.replace_all_uses_with(x)
    assert a.uses() == []
    assert {n.op_type for n, _ in x.uses()} == {"Relu", "Neg", "Add", "Mul"}
    assert all(n.inputs[i] is x for n, i in x.uses())


def test_replace_graph_output_keeps_the_output_name():
    model = _chain_model()
    graph = model.graph
    z = graph.outputs[0]
    c = _by_output(graph, "c").outputs[0]
    z.replace_all_uses_with(c, replace_graph_outputs=True)
    graph.remove(z.producer())
    assert graph.outputs[0] is c and c.name == "z"
    feeds = {"x": np.arange(8, dtype=np.float32).reshape(2, 4) - 4}
    (out,) = create_session(model.to_proto()).run(None, feeds)
    relu = np.maximum(feeds["x"], 0)
    np.testing.assert_array_equal(out, relu - relu)


def test_remove_refuses_a_node_whose_output_is_read_and_detaches_inputs():
    graph = _chain_model().graph
    neg = _by_output(graph, "b")
    with pytest.raises(GraphError, match="still used"):
        graph.remove(neg)
    add = _by_output(graph, "c")
    add.replace_input_with(1, add.inputs[0])
    graph.remove(neg)
    a = _by_output(graph, "a").outputs[0]
    assert neg.graph is None and all(n is not neg for n, _ in a.uses())
    assert len(graph) == 3 and [n.op_type for n in graph] == ["Relu", "Add", "Mul"]


def test_iteration_is_a_snapshot_so_passes_can_mutate():
    graph = _chain_model().graph
    for node in graph:
        if node.op_type == "Relu":
            graph.insert_after(node, Node("", "Identity", [node.outputs[0]]))
    assert [n.op_type for n in graph] == ["Relu", "Identity", "Neg", "Add", "Mul"]


def test_fresh_names_are_unique_across_subgraphs():
    model = onnxgraph.from_proto(_if_model())
    graph = model.graph
    taken = {v.name for g in model.all_graphs() for n in g for v in n.outputs}
    names = {graph.fresh_name("then_out") for _ in range(3)}
    assert len(names) == 3 and not names & taken


def test_inserted_nodes_get_fresh_output_names():
    graph = _chain_model().graph
    op = OpBuilder(graph, insert_before=_by_output(graph, "z"))
    first = op.Relu(graph.inputs[0])
    second = op.Relu(graph.inputs[0])
    assert first.name != second.name
    assert {first.name, second.name}.isdisjoint({"x", "a", "b", "c", "z"})
    assert [n.op_type for n in graph][-3:] == ["Relu", "Relu", "Mul"]


def test_sort_is_stable_and_fixes_misordered_nodes():
    graph = _chain_model().graph
    relu = graph.nodes[0]
    graph.remove(relu, safe=False)
    relu_again = Node("", "Relu", [graph.inputs[0]], outputs=[Value("r")])
    graph.append(relu_again)
    # readers of the old 'a' now read the late-defined 'r'
    for node in graph.nodes[:-1]:
        for i, v in enumerate(node.inputs):
            if v is not None and v.name == "a":
                node.replace_input_with(i, relu_again.outputs[0])
    assert graph.find_cycle_or_disorder() is not None
    graph.sort()
    assert [n.op_type for n in graph] == ["Relu", "Neg", "Add", "Mul"]
    assert graph.find_cycle_or_disorder() is None


def test_sort_reports_a_cycle():
    graph = _chain_model().graph
    relu = graph.nodes[0]
    relu.replace_input_with(0, graph.outputs[0])
    with pytest.raises(GraphError, match="cycle"):
        graph.sort()


def test_subgraph_reads_of_outer_values_are_uses_of_the_outer_value():
    model = onnxgraph.from_proto(_if_model())
    graph = model.graph
    if_node = next(n for n in graph if n.op_type == "If")
    outer = next(v for n in graph for v in n.outputs if v.name == "scaled")
    readers = [n for n, _ in outer.uses()]
    assert any(n.graph is not graph for n in readers), "the branch's Add reads 'scaled'"
    assert outer in if_node.implicit_inputs()
    # replacing the outer value rewires the read inside the branch
    outer.replace_all_uses_with(graph.inputs[0])
    branch_add = next(n for g in if_node.subgraphs() for n in g if n.op_type == "Add")
    assert branch_add.inputs[0] is graph.inputs[0]


def test_initializer_rename_keeps_the_table_consistent():
    model = onnxgraph.load(_mlp_path())
    w = model.graph.initializers["fc0.weight"]
    w.name = "renamed"
    assert "fc0.weight" not in model.graph.initializers
    assert model.graph.initializers["renamed"] is w
    proto = model.to_proto()
    assert "renamed" in {t.name for t in proto.graph.initializer}
    assert "renamed" in {i for n in proto.graph.node for i in n.input}


def test_model_built_with_the_op_builder_runs():
    graph = onnxgraph.Graph("built")
    x = graph.add_input(Value("x", types.tensor_type(F, ["n", 3])))
    op = OpBuilder(graph)
    y = op.Mul(op.Relu(x), op.const(np.float32(2.0)))
    y.type = types.tensor_type(F, ["n", 3])
    graph.outputs.append(y)
    model = onnxgraph.Model(graph, ir_version=0, opset_imports={"": 17})
    proto = model.to_proto()
    onnx.checker.check_model(proto)
    assert proto.ir_version == 8  # the lowest IR version supporting opset 17
    data = np.array([[-1, 0, 2]], np.float32)
    (out,) = create_session(proto).run(None, {"x": data})
    np.testing.assert_array_equal(out, np.maximum(data, 0) * 2)


def _mlp_path() -> str:
    import os

    return os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")


def _if_model() -> onnx.ModelProto:
    return parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (bool cond, float[2] x) => (float[2] y) {
            two = Constant<value = float {2.0}>()
            scaled = Mul(x, two)
            y = If(cond) <
                then_branch = then_g () => (float[2] then_out) { then_out = Add(scaled, x) },
                else_branch = else_g () => (float[2] else_out) { else_out = Sub(scaled, x) }
            >
        }"""
    )


def test_a_graph_input_cannot_take_over_an_output_name():
    """Renaming an input to keep an output's name would change the model's interface."""
    graph = _chain_model().graph
    z = graph.outputs[0]
    with pytest.raises(GraphError, match="cannot take over graph output 'z'"):
        z.replace_all_uses_with(graph.inputs[0], replace_graph_outputs=True)
    assert graph.inputs[0].name == "x" and graph.outputs[0] is z


def test_names_given_after_fresh_names_started_are_never_handed_out_again():
    graph = _chain_model().graph
    graph.fresh_name("w")  # name tracking has started
    graph.add_initializer(Value("w_1", const_value=onnxgraph.Tensor(np.ones(4, np.float32))))
    graph.add_input(Value("w_2", types.tensor_type(F, [4])))
    assert graph.fresh_name("w") not in {"w", "w_1", "w_2"}
