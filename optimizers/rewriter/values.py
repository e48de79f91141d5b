"""Reading constant data from values (initializers and Constant nodes) and the constant arguments
of ops that moved from attributes to inputs across opsets."""

from __future__ import annotations

import numpy as np

from onnxgraph.node import Node
from onnxgraph.optimizers.utils import constant_array
from onnxgraph.value import Value


def const_value(value: Value | None) -> np.ndarray | None:
    """The data of a constant value (see :func:`onnxgraph.optimizers.utils.constant_array`), or None."""
    return constant_array(value)


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
    shape = node.input(0).shape
    return None if shape is None else list(reversed(range(len(shape))))
