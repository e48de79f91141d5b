"""Reading constant data from values (initializers and Constant nodes)."""

from __future__ import annotations

import numpy as np

from onnxgraph.attribute import AttrType
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

_SCALAR_CONSTANT_ATTRS = ("value_float", "value_floats", "value_int", "value_ints")


def const_value(value: Value | None) -> np.ndarray | None:
    """The data of a constant value, or None.

    A constant is an initializer that is not also a graph input (a graph input may override it),
    or the output of a Constant node holding a dense tensor or numbers.
    """
    if value is None:
        return None
    if value.const_value is not None:
        if (
            isinstance(value.const_value, Tensor)
            and value.is_initializer()
            and not value.is_graph_input()
        ):
            return value.const_value.numpy()
        return None
    node = value.producer()
    if node is None or node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
        return None
    attr = node.attributes.get("value")
    if attr is not None:
        return (
            attr.value.numpy() if attr.type == AttrType.TENSOR and not attr.ref_attr_name else None
        )
    for name in _SCALAR_CONSTANT_ATTRS:
        attr = node.attributes.get(name)
        if attr is not None and not attr.ref_attr_name:
            dtype = np.float32 if name.startswith("value_float") else np.int64
            return np.asarray(attr.value, dtype=dtype)
    return None


def const_ints(value: Value | None) -> list[int] | None:
    """A constant integer tensor's elements as a flat list of ints, or None."""
    data = const_value(value)
    if data is None or data.dtype.kind not in "iu":
        return None
    return [int(v) for v in data.reshape(-1)]
