"""A graph's input and output lists: list-like containers that keep the IR's invariants.

``graph.inputs`` and ``graph.outputs`` behave like lists of values (indexing, slices, ``append``,
``insert``, ``remove``, ``pop``, ``clear``, slice assignment), but every edit goes through one place that
keeps each value's state right: a graph input belongs to its graph (``is_graph_input()``), has no
producer, appears once and has its name claimed, so ``fresh_name`` never hands it out again; membership
tests (``value in graph.outputs``, ``is_graph_output()``) are by identity and take constant time. The model
is onnx-ir's ``GraphInputs``/``GraphOutputs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableSequence
from typing import TYPE_CHECKING, overload

from onnxgraph.errors import GraphError

if TYPE_CHECKING:
    from onnxgraph.graph import Graph
    from onnxgraph.value import Value


class _GraphValues(MutableSequence["Value"]):
    """The shared mechanics: a list plus an identity count of its values, with add/remove hooks."""

    __slots__ = ("_graph", "_values", "_counts")
    kind = "values"
    """What the list holds, for messages: "inputs" or "outputs"."""

    def __init__(self, graph: Graph):
        self._graph = graph
        self._values: list[Value] = []
        self._counts: dict[Value, int] = {}

    # -- hooks ----------------------------------------------------------------------------------
    def _adding(self, value: Value) -> None:
        """Check ``value`` and update its state before it joins the list."""

    def _removed(self, value: Value) -> None:
        """Update ``value``'s state after its last occurrence left the list."""

    # -- reading --------------------------------------------------------------------------------
    @overload
    def __getitem__(self, index: int) -> Value: ...

    @overload
    def __getitem__(self, index: slice) -> list[Value]: ...

    def __getitem__(self, index: int | slice) -> Value | list[Value]:
        return self._values[index]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Value]:
        return iter(self._values)

    def __contains__(self, value: object) -> bool:
        try:
            return value in self._counts
        except TypeError:  # unhashable: cannot be a Value
            return False

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _GraphValues):
            return self._values == other._values
        if isinstance(other, (list, tuple)):
            return self._values == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._values!r})"

    # -- writing --------------------------------------------------------------------------------
    @overload
    def __setitem__(self, index: int, value: Value) -> None: ...

    @overload
    def __setitem__(self, index: slice, value: Iterable[Value]) -> None: ...

    def __setitem__(self, index: int | slice, value: Value | Iterable[Value]) -> None:
        if isinstance(index, slice):
            new = list(value)  # type: ignore[arg-type]
            old = self._values[index]
            probe = list(self._values)
            probe[index] = new  # raises like a list on a bad extended-slice length
            self._replace(old, new, probe)
        else:
            self._replace([self._values[index]], [value], None, index)  # type: ignore[list-item]

    def __delitem__(self, index: int | slice) -> None:
        old = self._values[index] if isinstance(index, slice) else [self._values[index]]
        del self._values[index]
        for value in old:
            self._forget(value)

    def insert(self, index: int, value: Value) -> None:
        self._add(value)
        self._values.insert(index, value)

    def reverse(self) -> None:
        self._values.reverse()

    def copy(self) -> list[Value]:
        """A plain list of the values (a snapshot)."""
        return list(self._values)

    def _replace(self, old: list[Value], new: list[Value], result: list[Value] | None, index: int = 0) -> None:
        for value in old:  # a value both removed and added again is never left without its graph
            self._forget(value, detach=False)
        added: list[Value] = []
        try:
            for value in new:
                self._add(value)
                added.append(value)
        except BaseException:
            for value in added:
                self._forget(value, detach=False)
            for value in old:
                self._count(value)
            for value in added:
                if value not in self._counts:
                    self._removed(value)
            raise
        if result is None:
            self._values[index] = new[0]
        else:
            self._values[:] = result
        for value in old:
            if value not in self._counts:
                self._removed(value)

    def _add(self, value: Value) -> None:
        from onnxgraph.value import Value

        if not isinstance(value, Value):
            raise TypeError(f"graph {self.kind} must be Values, not {type(value).__name__}")
        self._adding(value)
        self._count(value)

    def _count(self, value: Value) -> None:
        self._counts[value] = self._counts.get(value, 0) + 1

    def _forget(self, value: Value, *, detach: bool = True) -> None:
        left = self._counts[value] - 1
        if left:
            self._counts[value] = left
            return
        del self._counts[value]
        if detach:
            self._removed(value)


class GraphInputs(_GraphValues):
    """A graph's inputs: values without a producer that belong to this graph, each listed once."""

    __slots__ = ()
    kind = "inputs"

    def _adding(self, value: Value) -> None:
        graph = self._graph
        if value in self._counts:
            raise GraphError(f"{value.name!r} is already an input of graph {graph.name!r}")
        if value.producer() is not None:
            raise GraphError(f"{value.name!r} is written by {value.producer()!r}: a graph input cannot be")
        if value._graph is not None and value._graph is not graph:
            raise GraphError(f"{value.name!r} belongs to graph {value._graph.name!r}, not to {graph.name!r}")
        value._graph = graph
        if value.name is None:
            value.name = graph.fresh_name("input")
        graph._claim(value.name)

    def _removed(self, value: Value) -> None:
        if not value.is_initializer():
            value._graph = None


class GraphOutputs(_GraphValues):
    """A graph's outputs: any values of the graph's scope (a value may be listed more than once)."""

    __slots__ = ()
    kind = "outputs"

    def _adding(self, value: Value) -> None:
        self._graph._claim(value.name)
