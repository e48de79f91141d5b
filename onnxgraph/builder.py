"""An op builder: write ``op.Add(op.MatMul(x, w), b)`` to append nodes to a graph.

>>> op = OpBuilder(graph)                                   # doctest: +SKIP
>>> y = op.Relu(op.Add(x, op.const(np.float32(1.0))))       # doctest: +SKIP

Each call creates one node in the builder's graph (at the end, or before ``insert_before``) and
returns its output value; a call that gives ``_outputs=N`` returns the tuple of its N outputs (a tuple
even for N = 1, so code that computes N needs no special case, and the two forms are typed apart).
Keyword arguments become attributes; ``_domain`` picks an operator domain and ``_name`` a node name.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol, cast, overload

import numpy as np

from onnxgraph import types
from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value


class OpCall(Protocol):
    """What ``builder.<OpType>`` returns: one output value, or a tuple when ``_outputs`` is given."""

    @overload
    def __call__(
        self, *inputs: Value | None, _outputs: None = None, _domain: str = "", _name: str = "", **attrs: Any
    ) -> Value: ...

    @overload
    def __call__(
        self, *inputs: Value | None, _outputs: int, _domain: str = "", _name: str = "", **attrs: Any
    ) -> tuple[Value, ...]: ...


class OpBuilder:
    """Appends nodes to ``graph`` (or inserts them before ``insert_before``).

    Args:
        graph: the graph to add nodes to.
        insert_before: a node of ``graph``; new nodes go just before it, in creation order.
        constants_as_nodes: make :meth:`const` create Constant nodes instead of initializers (what
            function bodies and subgraphs that must stay self-contained need).
    """

    def __init__(self, graph: Graph, *, insert_before: Node | None = None, constants_as_nodes: bool = False):
        self.graph = graph
        self.insert_before = insert_before
        self.constants_as_nodes = constants_as_nodes
        self.created: list[Node] = []
        """Every node this builder made, in order."""
        self._made: set[Node] = set()

    def __getattr__(self, op_type: str) -> OpCall:
        if op_type.startswith("_"):
            raise AttributeError(op_type)
        return cast(OpCall, functools.partial(self.op, op_type))

    @overload
    def op(
        self,
        op_type: str,
        *inputs: Value | None,
        _outputs: None = None,
        _domain: str = "",
        _name: str = "",
        **attrs: Any,
    ) -> Value: ...

    @overload
    def op(
        self, op_type: str, *inputs: Value | None, _outputs: int, _domain: str = "", _name: str = "", **attrs: Any
    ) -> tuple[Value, ...]: ...

    def op(
        self,
        op_type: str,
        *inputs: Value | None,
        _outputs: int | None = None,
        _domain: str = "",
        _name: str = "",
        **attrs: Any,
    ) -> Value | tuple[Value, ...]:
        """Create one ``op_type`` node; return its output, or the tuple of its outputs when ``_outputs``
        is given."""
        node = Node(_domain, op_type, inputs, attrs, num_outputs=1 if _outputs is None else _outputs, name=_name)
        self.add_node(node)
        return node.outputs[0] if _outputs is None else node.outputs

    def add_node(self, node: Node) -> Node:
        """Insert an already built node at the builder's position."""
        if self.insert_before is not None:
            self.graph.insert_before(self.insert_before, node)
        else:
            self.graph.append(node)
        self.created.append(node)
        self._made.add(node)
        return node

    def made(self, node: Node | None) -> bool:
        """Whether this builder created ``node`` (constant time, unlike a search of :attr:`created`)."""
        return node in self._made

    def const(self, data: Any, dtype: Any = None, *, name: str = "const") -> Value:
        """A constant value holding ``data`` (an initializer, or a Constant node; see the class)."""
        array = np.asarray(data, dtype=dtype)
        tensor = Tensor(array)
        if not self.constants_as_nodes:
            return self.graph.make_initializer(tensor, name)
        value = self.op("Constant", value=tensor)
        value.type = types.tensor_type(tensor.elem_type, tensor.dims)
        return value
