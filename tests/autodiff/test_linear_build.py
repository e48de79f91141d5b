"""The gradient builder's work grows linearly with the model: no step scans the whole graph per node.

No timings: the tests count full-graph walks (``Graph.nodes`` snapshots, ``Graph.all_nodes`` walks)
and builder searches while building the gradient of chains of two lengths; a per-node scan makes
the count grow with the length.
"""

from __future__ import annotations

import model_builders as build
import numpy as np
import pytest

from onnxgraph.autodiff import build_gradient
from onnxgraph.autodiff.api import remove_dead_nodes
from onnxgraph.builder import OpBuilder
from onnxgraph.graph import Graph


def _walks(monkeypatch) -> list[str]:
    """Record every full walk of a graph's node list."""
    walks: list[str] = []
    nodes, all_nodes = Graph.nodes.fget, Graph.all_nodes

    def counted_nodes(self):
        walks.append("nodes")
        return nodes(self)

    def counted_all_nodes(self):
        walks.append("all_nodes")
        return all_nodes(self)

    monkeypatch.setattr(Graph, "nodes", property(counted_nodes))
    monkeypatch.setattr(Graph, "all_nodes", counted_all_nodes)
    init = OpBuilder.__init__

    def unsearchable_created(self, *args, **kwargs):  # exposing n gradients must not search n nodes each
        init(self, *args, **kwargs)
        self.created = _Unsearchable()

    monkeypatch.setattr(OpBuilder, "__init__", unsearchable_created)
    return walks


@pytest.mark.parametrize("chain,wrt", [(build.add_chain, None), (build.relu_chain, ["x"])], ids=["add", "relu"])
@pytest.mark.parametrize("cleanup", [remove_dead_nodes, "default"], ids=["dce-only", "default-cleanup"])
def test_full_graph_walks_do_not_grow_with_the_chain(monkeypatch, chain, wrt, cleanup):
    counts = []
    for n in (20, 80):
        walks = _walks(monkeypatch)
        options = {} if cleanup == "default" else {"cleanup": cleanup}
        result = build_gradient(chain(n), loss_fn="sum", output="y", wrt=wrt, **options)
        assert len(result.graph.outputs) == 2 + (1 if wrt else n)  # y, loss, the gradients
        counts.append(len(walks))
        monkeypatch.undo()
    assert counts[0] == counts[1], f"full-graph walks grew with the chain: {counts}"


def test_the_builder_answers_what_it_made_without_searching_its_list(monkeypatch):
    graph = Graph("g")
    b = OpBuilder(graph)
    x = b.const(np.float32(1.0))
    made = [b.Relu(x).producer() for _ in range(3)]
    b.created = _Unsearchable(b.created)  # a search of the list would fail
    assert all(b.made(n) for n in made) and not b.made(None)


class _Unsearchable(list):
    def __contains__(self, item) -> bool:
        raise AssertionError("searched the list of created nodes")
