"""Random sequences of mutations never break use-def chains, and the result still runs correctly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph import Node, Value, types
from onnxgraph.consistency import use_def_problems
from onnxgraph.runtime.sessions import create_session

F = onnx.TensorProto.FLOAT
SHAPE = [3, 4]


def _random_model(rng: np.random.Generator, size: int = 30) -> onnxgraph.Model:
    graph = onnxgraph.Graph("random")
    pool = [graph.add_input(Value(f"in{i}", types.tensor_type(F, SHAPE))) for i in range(3)]
    for _ in range(size):
        if rng.random() < 0.5:
            node = Node("", str(rng.choice(["Relu", "Neg", "Abs", "Tanh"])), [pool[rng.integers(len(pool))]])
        else:
            a, b = rng.integers(len(pool), size=2)
            node = Node("", str(rng.choice(["Add", "Mul", "Sub", "Max"])), [pool[a], pool[b]])
        graph.append(node)
        node.outputs[0].type = types.tensor_type(F, SHAPE)
        pool.append(node.outputs[0])
    graph.outputs.extend(pool[-3:])
    return onnxgraph.Model(graph, ir_version=8, opset_imports={"": 17})


def _evaluate(model: onnxgraph.Model, feeds) -> list[np.ndarray]:
    proto = model.to_proto()
    onnx.checker.check_model(proto)
    return create_session(proto).run(None, feeds)


def _mutate(graph: onnxgraph.Graph, rng: np.random.Generator) -> None:
    """One random semantics-preserving mutation."""
    nodes = graph.nodes
    choice = rng.integers(4)
    node = nodes[rng.integers(len(nodes))]
    if choice == 0:  # route a value through a new Identity
        out = node.outputs[0]
        identity = graph.insert_after(node, Node("", "Identity", [out]))
        identity.outputs[0].type = out.type
        out.replace_all_uses_with(identity.outputs[0], replace_graph_outputs=out.is_graph_output())
        identity.replace_input_with(0, out)  # the Identity itself keeps reading the original
    elif choice == 1:  # remove an Identity, its readers reading its input instead
        if node.op_type != "Identity":
            return
        source, out = node.inputs[0], node.outputs[0]
        if out.is_graph_output() and (source.is_graph_input() or source.is_graph_output()):
            return  # the output's name must survive, and the source's name is taken
        out.replace_all_uses_with(source, replace_graph_outputs=out.is_graph_output())
        graph.remove(node)
    elif choice == 2:  # remove nodes nobody reads
        for n in reversed(graph.nodes):
            if not any(v.has_uses() or v.is_graph_output() for v in n.outputs):
                graph.remove(n)
    else:  # move a node to the end, then restore a valid order
        graph.append(node)
        graph.sort()


@pytest.mark.parametrize("seed", range(12))
def test_random_mutations_keep_invariants_and_results(seed):
    rng = np.random.default_rng(seed)
    model = _random_model(rng)
    feeds = {f"in{i}": rng.standard_normal(SHAPE).astype(np.float32) for i in range(3)}
    expected = _evaluate(model, feeds)
    for _ in range(40):
        _mutate(model.graph, rng)
        assert use_def_problems(model) == []
    for e, a in zip(expected, _evaluate(model, feeds)):
        np.testing.assert_array_equal(e, a)


def test_the_checker_notices_a_broken_chain():
    model = _random_model(np.random.default_rng(0), size=5)
    node = model.graph.nodes[0]
    node._inputs[0] = model.graph.inputs[2]  # bypass the API on purpose
    node._inputs_view = None
    assert any("does not record that use" in p for p in use_def_problems(model))


def test_imported_models_are_consistent():
    from onnx.backend.test.case.node import collect_testcases

    for case in collect_testcases()[::25]:
        assert use_def_problems(onnxgraph.from_proto(case.model)) == [], case.name
