"""Graphs: an ordered list of nodes with inputs, outputs and initializers."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, cast

from onnxgraph.errors import GraphError
from onnxgraph.graph_containers import GraphInputs, GraphOutputs
from onnxgraph.node import Node
from onnxgraph.value import Value

if TYPE_CHECKING:
    import onnx

    from onnxgraph.tensor import SparseTensor, Tensor


class NameAuthority:
    """Hands out names that are unique across a graph and all its subgraphs."""

    __slots__ = ("_used", "_counters")

    def __init__(self, used: Iterable[str]):
        self._used = set(used)
        self._counters: dict[str, int] = {}

    def claim(self, name: str) -> None:
        self._used.add(name)

    def fresh(self, base: str) -> str:
        """``base`` if unused, else ``base_1``, ``base_2``... (the first free one)."""
        if base not in self._used:
            self._used.add(base)
            return base
        n = self._counters.get(base, 0)
        while True:
            n += 1
            candidate = f"{base}_{n}"
            if candidate not in self._used:
                self._counters[base] = n
                self._used.add(candidate)
                return candidate


class Graph:
    """A computation graph: nodes in order, graph inputs and outputs, initializers.

    Iterating a graph yields a snapshot of its nodes, so nodes can be inserted and removed while
    iterating. Subgraphs (If/Loop/Scan bodies) are Graphs whose ``parent_node`` is the node holding
    them; their nodes may read values of enclosing graphs.
    """

    __slots__ = (
        "name",
        "doc_string",
        "metadata_props",
        "_inputs",
        "_outputs",
        "initializers",
        "sparse_initializers",
        "value_info",
        "quantization_annotation",
        "extra",
        "parent_node",
        "_first",
        "_last",
        "_len",
        "_names",
    )

    def __init__(self, name: str = "", *, inputs: Iterable[Value] = (), outputs: Iterable[Value] = ()):
        self.name = name
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        self._inputs = GraphInputs(self)
        self._outputs = GraphOutputs(self)
        self.initializers: dict[str, Value] = {}
        self.sparse_initializers: dict[str, Value] = {}
        self.value_info: list[Value] = []
        """Values whose type annotations (ValueInfoProto) the graph records, in order."""
        self.quantization_annotation: list[onnx.TensorAnnotation] = []
        self.extra: onnx.GraphProto | None = None
        self.parent_node: Node | None = None
        self._first: Node | None = None
        self._last: Node | None = None
        self._len = 0
        self._names: NameAuthority | None = None
        self._inputs.extend(inputs)
        self._outputs.extend(outputs)

    # -- interface ------------------------------------------------------------------------------
    @property
    def inputs(self) -> GraphInputs:
        """The graph inputs, a list-like container whose edits keep every value's state right.

        Assigning a sequence replaces the contents. See :mod:`onnxgraph.graph_containers`.
        """
        return self._inputs

    @inputs.setter
    def inputs(self, values: Iterable[Value]) -> None:
        self._inputs[:] = list(values)

    @property
    def outputs(self) -> GraphOutputs:
        """The graph outputs, a list-like container (assigning a sequence replaces the contents)."""
        return self._outputs

    @outputs.setter
    def outputs(self, values: Iterable[Value]) -> None:
        self._outputs[:] = list(values)

    # -- structure ------------------------------------------------------------------------------
    @property
    def parent_graph(self) -> Graph | None:
        return self.parent_node.graph if self.parent_node is not None else None

    @property
    def root(self) -> Graph:
        graph = self
        while graph.parent_graph is not None:
            graph = graph.parent_graph
        return graph

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def nodes(self) -> list[Node]:
        """A snapshot of the nodes in order."""
        out = []
        node = self._first
        while node is not None:
            out.append(node)
            node = node._next
        return out

    def all_nodes(self) -> Iterator[Node]:
        """Every node of this graph and, depth first after each node, of its subgraphs.

        One explicit stack rather than nested generators, so a node d subgraphs deep costs O(1) to
        yield, not O(d) (a 12-deep If tree has 4,096 leaves).
        """
        stack: list[Iterator[Node]] = [_nodes_of(self)]
        while stack:
            node = next(stack[-1], None)
            if node is None:
                stack.pop()
                continue
            yield node
            stack.extend(_nodes_of(sub) for sub in reversed(node.subgraphs()))

    def all_graphs(self) -> Iterator[Graph]:
        """This graph and every subgraph below it."""
        yield self
        for node in self.all_nodes():
            yield from node.subgraphs()

    # -- names ----------------------------------------------------------------------------------
    def fresh_name(self, base: str) -> str:
        """A value or node name not used anywhere in the root graph's tree."""
        root = self.root
        if root._names is None:
            root._names = NameAuthority(root._names_in_tree())
        return root._names.fresh(base)

    def _names_in_tree(self) -> Iterator[str]:
        """Every value and node name of this graph and its subgraphs."""
        for g in self.all_graphs():
            yield from (v.name for v in g.inputs if v.name)
            yield from (v.name for v in g.outputs if v.name)
            yield from g.initializers
            yield from g.sparse_initializers
            for n in g.nodes:
                yield from (v.name for v in n.outputs if v.name)
                if n.name:
                    yield n.name

    def _claim(self, name: str | None) -> None:
        """Record a name chosen by the caller, once fresh names are being handed out."""
        names = self.root._names
        if name and names is not None:
            names.claim(name)

    # -- inputs and initializers ----------------------------------------------------------------
    def add_input(self, value: Value) -> Value:
        """Append a graph input (the same as ``graph.inputs.append(value)``) and return it."""
        self._inputs.append(value)
        return value

    def add_initializer(self, value: Value) -> Value:
        """Register ``value`` (whose ``const_value`` is set) as an initializer of this graph."""
        if value.const_value is None:
            raise ValueError(f"initializer {value.name!r} has no const_value")
        name = value.name
        if name is None:
            name = value.name = self.fresh_name("const")
        if name in self.initializers and self.initializers[name] is not value:
            raise GraphError(f"initializer name {name!r} is already taken")
        value._graph = self
        self._claim(name)
        self.initializers[name] = value
        return value

    def make_initializer(self, tensor: Tensor, base_name: str = "const") -> Value:
        """Create an initializer value holding ``tensor`` under a fresh name."""
        from onnxgraph import types

        name = self.fresh_name(base_name)
        value = Value(name, const_value=tensor)
        value.type = types.tensor_type(tensor.elem_type, tensor.dims)
        tensor.name = name
        return self.add_initializer(value)

    def remove_initializer(self, name: str) -> Value:
        """Drop an initializer (it must have no uses)."""
        value = self.initializers[name]
        if value.has_uses():
            raise GraphError(f"initializer {name!r} is still used")
        del self.initializers[name]
        if value not in self.inputs:
            value._graph = None
        return value

    def replace_with_initializers(self, node: Node, tensors: list[Tensor]) -> None:
        """Remove ``node`` and make each of its outputs an initializer holding the matching tensor.

        The output values themselves stay (names, readers, graph-output slots), so nothing needs
        rewiring. A value that is not a graph output takes the tensor's exact type.
        """
        from onnxgraph import types

        if len(tensors) != len(node.outputs):
            raise ValueError(f"{node!r} has {len(node.outputs)} outputs, got {len(tensors)} tensors")
        self.remove(node, safe=False)
        for value, tensor in zip(node.outputs, tensors):
            value._producer, value._index = None, None
            value.const_value = tensor
            tensor.name = value.name or ""  # inserted node outputs are always named
            if value.type is None or value not in self.outputs:
                value.type = types.tensor_type(tensor.elem_type, tensor.dims)
            self.add_initializer(value)

    def _rename_initializer(self, old: str, new: str) -> None:
        self._retable({old: new})

    def rename_initializers(self, renames: Iterable[tuple[Value, str]]) -> None:
        """Give several initializers of this graph new names at once, keeping their order.

        One pass over the initializer table however many are renamed (renaming them one by one
        through ``Value.name`` rebuilds the table each time).
        """
        table: dict[str, str] = {}
        for value, name in renames:
            assert value.name is not None  # initializers are always named
            table[value.name] = name
            value._name = name
            self._claim(name)
        self._retable(table)

    def _retable(self, renames: dict[str, str]) -> None:
        for table in (self.initializers, self.sparse_initializers):
            if any(old in table for old in renames):
                items = [(renames.get(k, k), v) for k, v in table.items()]
                table.clear()
                table.update(items)

    def add_sparse_initializer(self, value: Value, tensor: SparseTensor) -> Value:
        if not value.name:
            raise ValueError("a sparse initializer needs a name")
        value.const_value = tensor
        value._graph = self
        self._claim(value.name)
        self.sparse_initializers[value.name] = value
        return value

    # -- node list ------------------------------------------------------------------------------
    def append(self, node: Node) -> Node:
        """Add ``node`` at the end (a node of this graph is moved there)."""
        return self._link(node, self._last, None)

    def extend(self, nodes: Iterable[Node]) -> None:
        for node in nodes:
            self.append(node)

    def insert_before(self, anchor: Node, node: Node) -> Node:
        """Add ``node`` just before ``anchor`` (a node of this graph is moved there)."""
        return self._link(node, anchor._prev, anchor)

    def insert_after(self, anchor: Node, node: Node) -> Node:
        """Add ``node`` just after ``anchor`` (a node of this graph is moved there)."""
        return self._link(node, anchor, anchor._next)

    def _link(self, node: Node, prev: Node | None, nxt: Node | None) -> Node:
        if node is prev or node is nxt:
            return node
        if node.graph is self:  # a move: unlink, keeping inputs and uses
            self._unlink(node)
        elif node.graph is not None:
            raise GraphError(f"{node!r} belongs to another graph")
        node.graph = self
        node._prev, node._next = prev, nxt
        if prev is None:
            self._first = node
        else:
            prev._next = node
        if nxt is None:
            self._last = node
        else:
            nxt._prev = node
        self._len += 1
        for value in node.outputs:
            if value.name is None:
                value.name = self.fresh_name(f"{node.op_type.lower()}_out")
            else:
                self._claim(value.name)
        for sub in node.subgraphs():
            sub.parent_node = node
            if self.root._names is not None:  # names chosen inside the body are taken from now on
                for name in sub._names_in_tree():
                    self._claim(name)
        return node

    def remove(self, node: Node, *, safe: bool = True) -> None:
        """Unlink ``node`` and drop its reads of its inputs.

        Args:
            node: a node of this graph.
            safe: refuse when one of its outputs is still read or is a graph output.
        """
        if node.graph is not self:
            raise GraphError(f"{node!r} is not in graph {self.name!r}")
        if safe:
            for value in node.outputs:
                if value.has_uses() or value in self.outputs:
                    raise GraphError(f"cannot remove {node!r}: output {value.name!r} is still used")
        node.detach_inputs()
        self._unlink(node)

    def _unlink(self, node: Node) -> None:
        prev, nxt = node._prev, node._next
        if prev is None:
            self._first = nxt
        else:
            prev._next = nxt
        if nxt is None:
            self._last = prev
        else:
            nxt._prev = prev
        node._prev = node._next = None
        node.graph = None
        self._len -= 1

    # -- order ----------------------------------------------------------------------------------
    def _dependencies(self, node: Node) -> Iterator[Node]:
        """Nodes of this graph whose outputs ``node`` reads, directly or inside its subgraphs."""
        reads = [v for v in node.inputs if v is not None]
        if node.attributes and node.subgraphs():
            reads += node.implicit_inputs()
        for value in reads:
            producer = value.producer()
            if producer is not None and producer.graph is self:
                yield producer

    def find_cycle_or_disorder(self) -> Node | None:
        """The first node that reads a value produced later in the list, or None when in order."""
        seen: set[int] = set()
        for node in self.nodes:
            for dep in self._dependencies(node):
                if id(dep) not in seen:
                    return node
            seen.add(id(node))
        return None

    def topological_order(self) -> list[Node]:
        """The nodes in a topological order that keeps the current order wherever it is valid.

        Raises:
            GraphError: the graph has a cycle (naming one node on it).
        """
        nodes = self.nodes
        position = {id(n): i for i, n in enumerate(nodes)}
        waiting_on = [0] * len(nodes)
        readers: list[list[int]] = [[] for _ in nodes]
        for i, node in enumerate(nodes):
            for dep in {id(d): d for d in self._dependencies(node)}.values():
                waiting_on[i] += 1
                readers[position[id(dep)]].append(i)
        ready = [i for i, count in enumerate(waiting_on) if count == 0]
        heapq.heapify(ready)
        order: list[Node] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(nodes[i])
            for r in readers[i]:
                waiting_on[r] -= 1
                if waiting_on[r] == 0:
                    heapq.heappush(ready, r)
        if len(order) != len(nodes):
            stuck = next(nodes[i] for i, count in enumerate(waiting_on) if count)
            label = stuck.name or stuck.op_type
            raise GraphError(f"graph '{self.name}' has a cycle through node '{label}'")
        return order

    def sort(self) -> None:
        """Reorder the nodes topologically (stable: an already valid order is kept)."""
        prev: Node | None = None
        for node in self.topological_order():
            node._prev = prev
            if prev is None:
                self._first = node
            else:
                prev._next = node
            prev = node
        if prev is not None:
            prev._next = None
        self._last = prev

    def copy(self) -> Graph:
        """A deep copy of this graph (a subgraph, typically) in no node: its own inputs, initializers,
        nodes (:meth:`Node.copy`, their subgraphs copied too) and values, with the same types.

        Names are fresh in this graph's root tree (the original's name where free, else ``name_1``...),
        so the copy can go into the same model beside the original (value names are unique across a
        model's scopes); subgraph interfaces are positional, so nothing depends on them. Values of
        enclosing scopes that the graph reads are read by the copy as well; tensors are shared
        (immutable in the IR).
        """
        twins: dict[Value, Value] = {}

        def twin(value: Value) -> Value:
            if value not in twins:
                name = self.fresh_name(value.name) if value.name else value.name
                twins[value] = Value(name, value.type, doc_string=value.doc_string)
                twins[value].metadata_props = dict(value.metadata_props)
            return twins[value]

        copy = Graph(self.name, inputs=[twin(v) for v in self.inputs])
        copy.doc_string, copy.metadata_props = self.doc_string, dict(self.metadata_props)
        for value in self.initializers.values():
            twin(value).const_value = value.const_value
            copy.add_initializer(twins[value])
        for value in self.sparse_initializers.values():
            copy.add_sparse_initializer(twin(value), cast("SparseTensor", value.const_value))
        for node in self:
            inputs = [None if v is None else twins.get(v, v) for v in node.inputs]
            clone = node.copy(inputs, name=self.fresh_name(node.name) if node.name else "")
            for old, new in zip(node.outputs, clone.outputs):
                if old.name:
                    new.name = self.fresh_name(old.name)
                new.doc_string, new.metadata_props = old.doc_string, dict(old.metadata_props)
                twins[old] = new
            copy.append(clone)
        copy.outputs.extend(twins.get(v, v) for v in self.outputs)
        copy.value_info = [twins.get(v, v) for v in self.value_info]
        copy.quantization_annotation = list(self.quantization_annotation)
        copy.extra = self.extra
        return copy

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {self._len} nodes)"


def _nodes_of(graph: Graph) -> Iterator[Node]:
    """The nodes of ``graph``, read when iteration reaches them (not when the iterator is made)."""
    yield from graph.nodes
