"""Node attributes: a name, an ONNX attribute type and a Python value."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from onnxgraph.tensor import SparseTensor, Tensor

if TYPE_CHECKING:
    from onnxgraph.graph import Graph

AttrType = onnx.AttributeProto.AttributeType
_GRAPH = onnx.AttributeProto.GRAPH  # plain ints: protobuf's enum wrapper is slow to look up in hot loops
_GRAPHS = onnx.AttributeProto.GRAPHS


class Attribute:
    """One attribute of a node or a function's default.

    ``value`` is an int, float, str (bytes when not UTF-8), Tensor, SparseTensor, Graph, TypeProto,
    or a list of those for the plural types. An attribute that refers to an attribute of the
    enclosing function has ``ref_attr_name`` set and ``value`` None.
    """

    __slots__ = ("name", "type", "value", "ref_attr_name", "doc_string")

    def __init__(
        self,
        name: str,
        type: int,  # noqa: A002 - mirrors the ONNX field
        value: Any,
        *,
        ref_attr_name: str = "",
        doc_string: str = "",
    ):
        self.name = name
        self.type = type
        self.value = value
        self.ref_attr_name = ref_attr_name
        self.doc_string = doc_string

    @classmethod
    def infer(cls, name: str, value: Any) -> Attribute:
        """Build an attribute from a Python value, choosing its type (int, float, str, lists, arrays...)."""
        from onnxgraph.graph import Graph  # local: graph imports attribute

        if isinstance(value, Attribute):
            return value
        if isinstance(value, bool | int | np.integer):
            return cls(name, AttrType.INT, int(value))
        if isinstance(value, float | np.floating):
            return cls(name, AttrType.FLOAT, float(value))
        if isinstance(value, str | bytes):
            return cls(name, AttrType.STRING, value)
        if isinstance(value, np.ndarray):
            return cls(name, AttrType.TENSOR, Tensor(value))
        if isinstance(value, Tensor):
            return cls(name, AttrType.TENSOR, value)
        if isinstance(value, Graph):
            return cls(name, AttrType.GRAPH, value)
        if isinstance(value, onnx.TypeProto):
            return cls(name, AttrType.TYPE_PROTO, value)
        if isinstance(value, list | tuple):
            items = list(value)
            if all(isinstance(v, bool | int | np.integer) for v in items):
                return cls(name, AttrType.INTS, [int(v) for v in items])
            if all(isinstance(v, int | float | np.number) for v in items):
                return cls(name, AttrType.FLOATS, [float(v) for v in items])
            if all(isinstance(v, str | bytes) for v in items):
                return cls(name, AttrType.STRINGS, items)
            if all(isinstance(v, Graph) for v in items):
                return cls(name, AttrType.GRAPHS, items)
            if all(isinstance(v, Tensor | np.ndarray) for v in items):
                return cls(name, AttrType.TENSORS, [v if isinstance(v, Tensor) else Tensor(v) for v in items])
        raise TypeError(f"cannot infer the ONNX attribute type of {name}={value!r}")

    def subgraphs(self) -> list[Graph]:
        """The graphs this attribute holds (GRAPH or GRAPHS), else an empty list."""
        if self.value is None:
            return []
        if self.type == _GRAPH:
            return [self.value]
        if self.type == _GRAPHS:
            return list(self.value)
        return []

    def __repr__(self) -> str:
        if self.ref_attr_name:
            return f"Attribute({self.name!r}, ref={self.ref_attr_name!r})"
        return f"Attribute({self.name!r}, {AttrType.Name(self.type)}, {self.value!r})"


__all__ = ["Attribute", "AttrType", "SparseTensor", "Tensor"]
