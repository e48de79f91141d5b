"""Rewiring inputs costs O(1) per input, not O(inputs): a wide node is never copied once per rewire.

No timings: these count the tuple snapshots ``Node.inputs`` builds, which only the linear
implementation keeps to one per read after edits.
"""

from __future__ import annotations

import onnx

from onnxgraph import Graph, Model, Value, types
from onnxgraph.consistency import use_def_problems
from onnxgraph.node import Node
from onnxgraph.optimizers.cse import CommonSubexpressionElimination

WIDTH = 2000


def _value(name: str) -> Value:
    return Value(name, types.tensor_type(onnx.TensorProto.FLOAT, (4,)))


def _count_snapshots(monkeypatch) -> list[Node]:
    built: list[Node] = []
    original = Node._snapshot_inputs

    def counting(self: Node) -> tuple:
        built.append(self)
        return original(self)

    monkeypatch.setattr(Node, "_snapshot_inputs", counting)
    return built


def test_rewiring_every_input_of_a_wide_node_copies_its_inputs_at_most_once(monkeypatch):
    old = [_value(f"a{i}") for i in range(WIDTH)]
    new = [_value(f"b{i}") for i in range(WIDTH)]
    node = Node("", "Sum", old)
    built = _count_snapshots(monkeypatch)
    for i, value in enumerate(new):
        node.replace_input_with(i, value)
    assert built == []  # no copy per rewire
    assert node.inputs == tuple(new)
    assert node.inputs is node.inputs  # built once, then shared until the next edit
    assert built == [node]
    assert all(not v.has_uses() for v in old) and all(v.uses() == [(node, i)] for i, v in enumerate(new))


def test_a_snapshot_taken_before_rewiring_stays_as_it_was():
    a, b = _value("a"), _value("b")
    node = Node("", "Add", [a, a])
    before = node.inputs
    node.replace_input_with(1, b)
    assert before == (a, a) and node.inputs == (a, b)


def test_cse_merging_the_readers_of_a_wide_sum_rebuilds_its_inputs_once(monkeypatch):
    """``wide``: one Sum over WIDTH identical Relu outputs; CSE rewires each Sum input once."""
    x = _value("x")
    graph = Graph("wide", inputs=[x])
    relus = [Node("", "Relu", [x], outputs=[_value(f"r{i}")]) for i in range(WIDTH)]
    total = Node("", "Sum", [r.outputs[0] for r in relus], outputs=[_value("y")])
    graph.extend([*relus, total])
    graph.outputs.append(total.outputs[0])
    model = Model(graph, ir_version=8, opset_imports={"": 17})
    built = _count_snapshots(monkeypatch)
    stats = CommonSubexpressionElimination().run(model)
    assert stats["node"] == WIDTH - 1
    assert built.count(total) <= 2  # not once per merged Relu
    assert total.inputs == (relus[0].outputs[0],) * WIDTH
    assert use_def_problems(model) == []
