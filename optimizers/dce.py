"""``dce``: dead code elimination.

Rewrites:
    1. ``node``: a node none of whose outputs is read (here or in a subgraph) or is a graph output
       is removed, with its subgraphs; chains die in one sweep.
    2. ``initializer``: an initializer nobody reads is removed (unless it is also a graph input:
       graph inputs are never removed).
    3. ``value_info``: type annotations of values that no longer exist are dropped.
    4. ``function``: model-local functions that no node calls (directly or through other
       functions) are removed.
    5. ``opset_import``: opset imports of domains no node uses are removed (the default domain stays).
"""

from __future__ import annotations

from collections import Counter

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.value import Value


class DeadCodeElimination(Pass):
    """Remove what nothing reads: nodes, initializers, value_info, functions, opset imports."""

    name = "dce"
    rewrites = ("node", "initializer", "value_info", "function", "opset_import")

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        self._sweep(model.graph, stats)
        for function in model.functions.values():
            self._sweep(function.graph, stats)
        if self.allows("function"):
            stats["function"] += self._remove_unused_functions(model)
        if self.allows("opset_import"):
            stats["opset_import"] += self._remove_unused_opsets(model)
        return stats

    def _sweep(self, graph: Graph, stats: Counter[str]) -> None:
        """Walk nodes last to first so a removed reader frees its producers in the same sweep;
        a kept node's subgraphs are swept when reached, before the outer values they read."""
        for node in reversed(graph.nodes):
            if self._try_node(graph, node):
                stats["node"] += 1
                continue
            for sub in node.subgraphs():
                self._sweep(sub, stats)
        for value in list(graph.initializers.values()):
            if self._try_initializer(graph, value):
                stats["initializer"] += 1
        if self._try_value_info(graph):
            stats["value_info"] += 1

    def _try_node(self, graph: Graph, node: Node) -> bool:
        if not self.allows("node") or not node.outputs:
            return False
        if any(v.has_uses() or v.is_graph_output() for v in node.outputs):
            return False
        for sub in node.subgraphs():
            for inner in sub.all_nodes():
                inner.detach_inputs()
        graph.remove(node)
        return True

    def _try_initializer(self, graph: Graph, value: Value) -> bool:
        if not self.allows("initializer") or value.has_uses():
            return False
        if value.is_graph_output() or value.is_graph_input():
            return False
        assert value.name is not None  # initializers are always named
        graph.remove_initializer(value.name)
        return True

    def _try_value_info(self, graph: Graph) -> bool:
        if not self.allows("value_info"):
            return False
        alive = [v for v in graph.value_info if _exists(v, graph)]
        if len(alive) == len(graph.value_info):
            return False
        graph.value_info[:] = alive
        return True

    def _remove_unused_functions(self, model: Model) -> int:
        called: set[tuple[str, str, str]] = set()
        pending = [model.graph]
        while pending:
            for node in pending.pop().all_nodes():
                key = (node.domain, node.op_type, node.overload)
                if key in model.functions and key not in called:
                    called.add(key)
                    pending.append(model.functions[key].graph)
        unused = [key for key in model.functions if key not in called]
        for key in unused:
            del model.functions[key]
        return len(unused)

    def _remove_unused_opsets(self, model: Model) -> int:
        used = {node.domain for node in model.all_nodes()}
        used |= {f.domain for f in model.functions.values()}
        for function in model.functions.values():
            used |= set(function.opset_imports)
        unused = [d for d in model.opset_imports if d not in used and d not in ("", "ai.onnx")]
        for domain in unused:
            del model.opset_imports[domain]
        return len(unused)


def _exists(value: Value, graph: Graph) -> bool:
    """True when ``value`` is still defined in (or above) ``graph``."""
    producer = value.producer()
    if producer is not None:
        return producer.graph is not None
    return value.graph is not None and (value.is_initializer() or value.is_graph_input())
