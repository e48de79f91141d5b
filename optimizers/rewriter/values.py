"""Reading constant data from values (initializers and Constant nodes) and the constant arguments
of ops that moved from attributes to inputs across opsets."""

from __future__ import annotations

import numpy as np

from onnxgraph.attribute import AttrType
from onnxgraph.node import Node
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


def input_ints(node: Node, index: int) -> list[int] | None:
    """The constant integers ``node`` reads at input ``index``; None if absent or not constant."""
    return const_ints(node.inputs[index]) if len(node.inputs) > index else None


def axes_arg(node: Node) -> list[int] | None:
    """The ``axes`` of a node that takes them as an attribute (older opsets) or as input 1."""
    if "axes" in node.attributes:
        return list(node.attr("axes"))
    return input_ints(node, 1)


def pads_arg(node: Node) -> list[int] | None:
    """The ``pads`` of a Pad: an attribute before opset 11, input 1 after."""
    if "pads" in node.attributes:
        return list(node.attr("pads"))
    return input_ints(node, 1)


def transpose_perm(node: Node) -> list[int] | None:
    """A Transpose's permutation; without ``perm`` it reverses the axes, which needs the rank."""
    perm = node.attr("perm")
    if perm is not None:
        return list(perm)
    shape = node.inputs[0].shape
    return None if shape is None else list(reversed(range(len(shape))))
