"""Values: the edges of the graph, with use-def chains."""

from __future__ import annotations

from typing import TYPE_CHECKING

import onnx

from onnxgraph import types
from onnxgraph.errors import GraphError

if TYPE_CHECKING:
    from onnxgraph.graph import Graph
    from onnxgraph.node import Node
    from onnxgraph.tensor import SparseTensor, Tensor


class Value:
    """A named value: a graph input, an initializer, or a node output.

    A value knows its producer (the node that writes it, or None) and its uses, an ordered set of
    ``(node, input_index)`` pairs that spans subgraph scopes. Uses change only through
    :meth:`Node.replace_input_with` and friends, so the two sides never drift apart.

    Args:
        name: the value's name; None asks the graph for a fresh one when the producer is inserted,
            and "" marks an omitted optional output.
        type: its ONNX type (treated as immutable: assign a new TypeProto to change it).
        const_value: the data of an initializer.
    """

    __slots__ = (
        "_name",
        "type",
        "doc_string",
        "metadata_props",
        "_producer",
        "_index",
        "_uses",
        "_graph",
        "const_value",
        "__weakref__",
    )

    def __init__(
        self,
        name: str | None = None,
        type: onnx.TypeProto | None = None,  # noqa: A002 - mirrors the ONNX field
        *,
        const_value: Tensor | SparseTensor | None = None,
        doc_string: str = "",
    ):
        self._name = name
        self.type = type
        self.doc_string = doc_string
        self.metadata_props: dict[str, str] = {}
        self._producer: Node | None = None
        self._index: int | None = None
        self._uses: dict[tuple[Node, int], None] = {}
        self._graph: Graph | None = None
        self.const_value = const_value

    # -- identity -----------------------------------------------------------------------------
    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, new: str) -> None:
        old, self._name = self._name, new
        graph = self._graph
        if graph is not None and old in graph.initializers and graph.initializers[old] is self:
            graph._rename_initializer(old, new)

    def __repr__(self) -> str:
        return f"Value({self._name!r}, {types.describe_type(self.type)})"

    # -- types ----------------------------------------------------------------------------------
    @property
    def elem_type(self) -> int | None:
        """ONNX element type of a tensor value, None if unknown or not a tensor."""
        return types.elem_type_from(self.type)

    @property
    def shape(self) -> tuple[types.Dim, ...] | None:
        """Dimensions (int, symbolic name or None), or None when the rank is unknown."""
        return types.shape_of(self.type)

    # -- use-def --------------------------------------------------------------------------------
    def producer(self) -> Node | None:
        """The node that writes this value, None for graph inputs and initializers."""
        return self._producer

    def index(self) -> int | None:
        """This value's position among its producer's outputs."""
        return self._index

    def uses(self) -> list[tuple[Node, int]]:
        """A snapshot of ``(node, input_index)`` pairs that read this value."""
        return list(self._uses)

    def consumers(self) -> list[Node]:
        """A snapshot of the distinct nodes that read this value, in first-use order."""
        return list(dict.fromkeys(node for node, _ in self._uses))

    def has_uses(self) -> bool:
        return bool(self._uses)

    @property
    def graph(self) -> Graph | None:
        """The graph that owns this value (its producer's graph, or the graph it is an input of)."""
        return self._producer.graph if self._producer is not None else self._graph

    def is_graph_input(self) -> bool:
        return self._graph is not None and id(self) in self._graph._ids_of("inputs")

    def is_initializer(self) -> bool:
        g = self._graph
        if g is None:
            return False
        return g.initializers.get(self._name) is self or g.sparse_initializers.get(self._name) is self

    def is_graph_output(self) -> bool:
        g = self.graph
        return g is not None and id(self) in g._ids_of("outputs")

    def replace_all_uses_with(self, new: Value, *, replace_graph_outputs: bool = False) -> None:
        """Make every reader of this value read ``new`` instead.

        Args:
            new: the replacement.
            replace_graph_outputs: also replace this value where it is a graph output; ``new`` then
                takes over the output's name so the graph's interface is unchanged.

        Raises:
            GraphError: ``new`` would have to take over an output's name but is a graph input or
                output itself, whose name is part of the interface (route it through an Identity).
        """
        g = self.graph
        takes_output = replace_graph_outputs and g is not None and any(o is self for o in g.outputs)
        if takes_output and new is not self and (new.is_graph_input() or new.is_graph_output()):
            raise GraphError(
                f"{new.name!r} cannot take over graph output {self._name!r}: it is a graph input or output"
            )
        for node, i in list(self._uses):
            node.replace_input_with(i, new)
        if takes_output:
            name = self._name
            self._name = g.fresh_name(name or "value")
            new.name = name
            g.outputs[:] = [new if o is self else o for o in g.outputs]
