"""Which pass changed which node while a pipeline runs, to blame a pass without rerunning prefixes.

After every pass the main graph's nodes are compared with what they were after the previous pass: a
node that is new, or whose op, inputs (the values and, for constants, their tensors) or attributes
are other objects, was changed by that pass. Region verification (:mod:`onnxgraph.optimizers.regions`)
names the nodes of the regions that differ from the original; when one pass alone changed them, it is
the culprit.
"""

from __future__ import annotations

from collections.abc import Iterable

from onnxgraph.model import Model
from onnxgraph.node import Node


class Provenance:
    """Records, per node of ``model``'s main graph, the passes that changed it.

    Args:
        model: the model the pipeline rewrites in place.
    """

    def __init__(self, model: Model) -> None:
        self._model = model
        self._seen = {id(n): (n, *_state(n)) for n in model.graph}
        self._changed_by: dict[int, set[str]] = {}

    def after(self, pass_name: str) -> None:
        """Note the nodes ``pass_name`` (which has just run) created or changed."""
        seen = {}
        for node in self._model.graph:
            state, held = _state(node)
            before = self._seen.get(id(node))
            if before is None or before[0] is not node or before[1] != state:
                self._changed_by.setdefault(id(node), set()).add(pass_name)
            seen[id(node)] = (node, state, held)
        self._seen = seen

    def passes_of(self, nodes: Iterable[Node]) -> set[str]:
        """The passes that changed any of ``nodes``."""
        return set().union(*(self._changed_by.get(id(n), set()) for n in nodes))


def _state(node: Node) -> tuple[tuple, tuple]:
    """What a node is made of, by object identity, and the objects themselves (held so that their ids
    are not reused while compared)."""
    held = (*node.inputs, *(v.const_value for v in node.inputs if v is not None), *node.attributes.values())
    inputs = tuple((id(v), id(v.const_value)) if v is not None else None for v in node.inputs)
    attributes = tuple((name, id(a), id(a.value)) for name, a in node.attributes.items())
    return (node.domain, node.op_type, inputs, attributes), held
