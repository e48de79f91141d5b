"""Editing a model without breaking any graph's interface: replacing values and removing nodes.

Graph outputs keep their names: a replacement takes the name over, which is refused when the
replacement cannot be renamed (a graph input, an initializer, another output, a value of an outer
scope). A value that a subgraph returns directly from an enclosing scope counts as read: it is
never replaced and its producer is never removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.value import Value


class GraphEditor:
    """Replaces values and removes nodes across a model's graphs, keeping interfaces intact.

    Args:
        model: the model to edit; subgraph outputs are indexed once, on creation.
    """

    def __init__(self, model: Model):
        self._escaping = {id(v) for g in model.all_graphs() for v in g.outputs if v is not None and v.graph is not g}

    def escapes(self, value: Value) -> bool:
        """Whether a subgraph returns ``value`` (from an enclosing scope) as one of its outputs."""
        return id(value) in self._escaping

    def is_needed(self, value: Value) -> bool:
        """Whether anything reads ``value``: a node, its graph's outputs or a subgraph's outputs."""
        return value.has_uses() or value.is_graph_output() or id(value) in self._escaping

    def can_replace(self, old: Value, new: Value) -> bool:
        """Whether :meth:`replace` may put ``new`` in place of ``old``."""
        if old is new or id(old) in self._escaping:
            return False
        if not old.is_graph_output():
            return True
        return not (new.is_graph_input() or new.is_initializer() or new.is_graph_output() or new.graph is not old.graph)

    def replace(self, old: Value, new: Value) -> None:
        """Make every reader and graph output of ``old`` use ``new`` (check :meth:`can_replace`).

        ``new`` takes ``old``'s type when it has none, or when it takes over a graph output.
        """
        if old.is_graph_output() or new.type is None:
            new.type = old.type if old.type is not None else new.type
        old.replace_all_uses_with(new, replace_graph_outputs=True)

    def remove_unused(self, nodes: Iterable[Node]) -> None:
        """Remove those of ``nodes`` (and only those) whose outputs nothing needs, repeatedly."""
        pending = [(n, g) for n in nodes if (g := n.graph) is not None]
        progress = True
        while pending and progress:
            progress = False
            for node, graph in list(pending):
                if not any(self.is_needed(v) for v in node.outputs):
                    graph.remove(node)
                    pending.remove((node, graph))
                    progress = True

    def drop_unused_constants(self, values: Iterable[Value]) -> None:
        """Remove the initializers and Constant nodes among ``values`` that nothing needs now."""
        for value in values:
            if self.is_needed(value) or value.is_graph_input():
                continue
            owner, name, producer = value.graph, value.name, value.producer()
            if owner is not None and name is not None and owner.initializers.get(name) is value:
                owner.remove_initializer(name)
            elif producer is not None and producer.op_type == "Constant":
                self.remove_unused([producer])


def drop_stale_value_info(graph: Graph) -> None:
    """Forget type annotations of values whose producer was removed."""
    graph.value_info[:] = [
        v for v in graph.value_info if (producer := v.producer()) is None or producer.graph is not None
    ]


@dataclass
class Scope:
    """A graph to rewrite, with what its nodes are written against.

    Attributes:
        graph: the main graph, a subgraph, or a function body (or a subgraph inside one).
        opset: the default-domain opset version its nodes follow.
        in_function: the graph lies in a function body (constants must be Constant nodes there).
    """

    graph: Graph
    opset: int
    in_function: bool


def scopes(model: Model) -> Iterator[Scope]:
    """Every graph of ``model``; one whose holder a rewrite has removed meanwhile is skipped."""
    bodies = {id(f.graph): f for f in model.functions.values()}
    for graph in list(model.all_graphs()):
        root = graph.root
        function = bodies.get(id(root))
        if root is not model.graph and function is None:
            continue  # detached: the node holding it (or one above) was rewritten away
        opsets = (function.opset_imports or model.opset_imports) if function else model.opset_imports
        yield Scope(graph, opsets.get("", opsets.get("ai.onnx", 0)), function is not None)


def canonical_domain(domain: str) -> str:
    """``"ai.onnx"`` and ``""`` both name the default ONNX domain."""
    return "" if domain == "ai.onnx" else domain
