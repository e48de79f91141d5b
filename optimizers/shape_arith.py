"""Numpy evaluation of small integer shape arithmetic (the constant folder's fast path).

Shape computations in exported models are long chains of tiny int64 ops; running them in numpy
avoids building an onnxruntime session for them. Every function follows the ONNX definition,
including the attribute-vs-input forms of older opsets, and returns None for anything it does
not handle so the caller falls back to onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxgraph import types
from onnxgraph.node import Node

SMALL = 64
"""Largest integer input (in elements) the fast path accepts."""

Arrays = list  # list[np.ndarray | None]
Evaluator = Callable[[Node, Arrays], "list[np.ndarray] | None"]


def _axes(node: Node, arrays: Arrays, index: int) -> list[int] | None:
    if node.attr("axes") is not None:
        return list(node.attr("axes"))
    if len(arrays) > index and arrays[index] is not None:
        return [int(a) for a in arrays[index].reshape(-1)]
    return None


def _shape(node: Node, a: Arrays):
    dims = a[0].shape
    start, end = node.attr("start", 0), node.attr("end", None)
    return [np.array(dims[start:end], dtype=np.int64)]


def _size(node: Node, a: Arrays):
    return [np.array(a[0].size, dtype=np.int64)]


def _cast(node: Node, a: Arrays):
    target = types.np_dtype(node.attr("to"))
    if not (_is_int(a[0]) and (np.issubdtype(target, np.integer) or target == np.bool_)):
        return None
    return [a[0].astype(target)]


def _unsqueeze(node: Node, a: Arrays):
    axes = _axes(node, a, 1)
    if axes is None:
        return None
    rank = a[0].ndim + len(axes)
    return [np.expand_dims(a[0], tuple(sorted(x % rank for x in axes)))]


def _squeeze(node: Node, a: Arrays):
    axes = _axes(node, a, 1)
    data = a[0]
    if axes is None:
        return [np.squeeze(data)]
    squeezed = tuple(x % data.ndim for x in axes) if data.ndim else ()
    if any(data.shape[x] != 1 for x in squeezed):
        return None
    return [np.squeeze(data, axis=squeezed)]


def _concat(node: Node, a: Arrays):
    return [np.concatenate(a, axis=node.attr("axis"))]


def _gather(node: Node, a: Arrays):
    data, indices = a
    axis = node.attr("axis", 0)
    size = data.shape[axis]
    if np.any(indices >= size) or np.any(indices < -size):
        return None
    return [np.take(data, indices, axis=axis)]


def _slice(node: Node, a: Arrays):
    data = a[0]
    if node.attr("starts") is not None:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes, steps = node.attr("axes"), None
    else:
        starts, ends = a[1].tolist(), a[2].tolist()
        axes = a[3].tolist() if len(a) > 3 and a[3] is not None else None
        steps = a[4].tolist() if len(a) > 4 and a[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if 0 in steps:
        return None
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis % data.ndim] = slice(start, end, step)
    return [data[tuple(index)]]


def _binary(fn):
    def evaluate(node: Node, a: Arrays):
        return [np.asarray(fn(a[0], a[1])).astype(a[0].dtype)]

    return evaluate


def _div(node: Node, a: Arrays):
    x, y = a
    if np.any(y == 0):
        return None
    quotient = np.abs(x) // np.abs(y) * np.sign(x) * np.sign(y)  # C-style: toward zero
    return [quotient.astype(x.dtype)]


def _mod(node: Node, a: Arrays):
    x, y = a
    if np.any(y == 0):
        return None
    remainder = np.fmod(x, y) if node.attr("fmod", 0) else np.mod(x, y)  # fmod: the dividend's sign
    return [np.asarray(remainder).astype(x.dtype)]


def _equal(node: Node, a: Arrays):
    return [np.equal(a[0], a[1])]


def _where(node: Node, a: Arrays):
    return [np.where(a[0], a[1], a[2])]


def _range(node: Node, a: Arrays):
    start, limit, delta = (x.item() for x in a)
    if delta == 0:
        return None
    out = np.arange(start, limit, delta, dtype=a[0].dtype)
    return [out] if out.size <= SMALL else None


def _reshape(node: Node, a: Arrays):
    data, shape = a[0], [int(d) for d in a[1]]
    if not node.attr("allowzero", 0):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [data.reshape(shape)]


EVALUATORS: dict[str, Evaluator] = {
    "Identity": lambda node, a: [a[0]],
    "Shape": _shape,
    "Size": _size,
    "Cast": _cast,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Gather": _gather,
    "Slice": _slice,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Max": _binary(np.maximum),
    "Min": _binary(np.minimum),
    "Neg": lambda node, a: [np.negative(a[0])],
    "Div": _div,
    "Mod": _mod,
    "Equal": _equal,
    "Where": _where,
    "Range": _range,
    "Reshape": _reshape,
}
_ANY_DATA = frozenset({"Shape", "Size", "Identity"})
"""Ops that work on any input type and size at no cost (no data is copied)."""


def _is_int(array: np.ndarray) -> bool:
    return np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_


def evaluate(node: Node, arrays: Arrays) -> list[np.ndarray] | None:
    """Evaluate ``node`` on ``arrays`` when it is small integer shape arithmetic, else None."""
    fn = EVALUATORS.get(node.op_type)
    if fn is None or any(a is None for a in arrays[:1]):
        return None
    if node.op_type not in _ANY_DATA:
        if any(a is not None and (not _is_int(a) or a.size > SMALL) for a in arrays):
            return None
        if node.op_type in ("Max", "Min") and len(arrays) != 2:
            return None
    try:
        return fn(node, arrays)
    except (ValueError, IndexError, TypeError):
        return None
