"""RotaryEmbedding fusion (opset >= 23): the rotate-half rotary embedding written out becomes one node.

``rotary`` matches, on a 4-D ``x[batch, heads, seq, head_dim]``::

    rotated = Concat(Neg(Slice(x, half, end)), Slice(x, 0, half), axis=-1)
    y = x * cos + rotated * sin

and writes ``RotaryEmbedding(x, cos_cache, sin_cache)`` with 3-D caches ``[batch, seq, head_dim/2]``:
the first half of ``cos`` / ``sin`` (rank 2 ``[seq, head_dim]``, or rank 4 ``[batch or 1, 1, seq,
head_dim]``), expanded to the batch (onnxruntime wants it exact). The formula equals RotaryEmbedding's
only when ``cos`` and ``sin`` repeat their first half in their second, so both must be constants or
Slices of constant tables (not along the last axis) whose halves are equal. Float32 only; the model's
opset and the installed onnxruntime must have RotaryEmbedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import float_constant
from onnxgraph.optimizers.fusions.ort_support import standard_op_available
from onnxgraph.optimizers.rewriter.rule import Failure, RewriteContext, RewriteRule, RewriteRuleSet, fail
from onnxgraph.optimizers.rewriter.values import input_ints
from onnxgraph.value import Value


def _pattern(op, x, cos, sin, first_starts, first_ends, second_starts, second_ends, first_axes, second_axes):
    first = op.Slice(x, first_starts, first_ends, first_axes, _bind="first")
    second = op.Slice(x, second_starts, second_ends, second_axes, _bind="second")
    rotated = op.Concat(op.Neg(second), first, _bind="concat")
    return op.Add(op.Mul(x, cos, _commute=True), op.Mul(rotated, sin, _commute=True), _commute=True)


def repeats_halves(value: Value, half: int) -> bool:
    """Whether ``value`` is provably equal in its first and second ``half`` of the last axis: a
    constant, or a Slice of a constant that does not cut the last axis."""
    data = float_constant(value)
    if data is None:
        producer = value.producer()
        if producer is None or producer.op_type != "Slice":
            return False
        table = float_constant(producer.inputs[0])
        axes = input_ints(producer, 3)
        if table is None or axes is None or any(a in (-1, table.ndim - 1) for a in axes):
            return False
        data = table
    return data.shape[-1] == 2 * half and bool(np.array_equal(data[..., :half], data[..., half:]))


def _slice_bounds(node: Node) -> tuple[int, int] | None:
    """``(start, end)`` of a Slice (without steps) over the last axis of a 4-D input only."""
    starts, ends, axes = (input_ints(node, i) for i in (1, 2, 3))
    if starts is None or ends is None or axes not in ([-1], [3]) or len(starts) != 1 or len(ends) != 1:
        return None
    return starts[0], ends[0]


def _check(
    ctx: RewriteContext, x: Value, cos: Value, sin: Value, first: Node, second: Node, concat: Node, **_: Any
) -> dict[str, Any] | Failure:
    shape = x.shape
    if shape is None or len(shape) != 4 or not isinstance(shape[3], int) or shape[3] % 2:
        return fail("x is not 4-D with an even, static head size")
    if x.elem_type != TensorProto.FLOAT:
        return fail("only float32 is fused")
    half = shape[3] // 2
    if concat.attr("axis") not in (-1, 3):
        return fail("the halves are not concatenated on the last axis")
    bounds = (_slice_bounds(first), _slice_bounds(second))
    if bounds[0] != (0, half) or bounds[1] is None or bounds[1][0] != half or bounds[1][1] < 2 * half:
        return fail("the Slices do not split the head in halves")
    for table in (cos, sin):
        table_shape = table.shape
        if table_shape is None or len(table_shape) not in (2, 4) or (len(table_shape) == 4 and table_shape[1] != 1):
            return fail("cos/sin are not [seq, head] or [batch, 1, seq, head]")
        if not repeats_halves(table, half):
            return fail("cos/sin are not provably repeated halves")
    unavailable = standard_op_available(ctx, "RotaryEmbedding")
    return unavailable if unavailable is not None else {"half": half}


def _replacement(op, x: Value, cos: Value, sin: Value, half: int, **_: Any) -> Value:
    batch = op.Concat(op.Shape(x, start=0, end=1), op.const(np.array([1, 1], np.int64)), axis=0)

    def cache(table: Value) -> Value:
        first_half = op.Slice(
            table,
            op.const(np.array([0], np.int64)),
            op.const(np.array([half], np.int64)),
            op.const(np.array([-1], np.int64)),
        )
        rank = len(table.shape or ())
        three_d = (
            op.Squeeze(first_half, op.const(np.array([1], np.int64)))
            if rank == 4
            else op.Unsqueeze(first_half, op.const(np.array([0], np.int64)))
        )
        return op.Expand(three_d, batch)

    return op.RotaryEmbedding(x, cache(cos), cache(sin))


RULES = RewriteRuleSet([RewriteRule("rotary", _pattern, _replacement, _check)])
