"""A per-channel Add (bias) or Mul (scale) after a Conv, folded into the Conv's bias and weight.

The constant must broadcast along the output-channel axis only: right-aligned to the Conv output's
rank (that of its weight), every dim is 1 except perhaps axis 1, which is 1 or the channel count.
So ``y + B`` and ``y * S`` keep y's shape and type and equal a Conv with bias ``b + B`` or weight
``W * S`` and bias ``b * S``. A Mul needs the weight to be a constant no other node reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import attributes_of, float_constant, private_weight
from onnxgraph.optimizers.rewriter.rule import (
    Failure,
    RewriteContext,
    RewriteRule,
    RewriteRuleSet,
    fail,
)
from onnxgraph.value import Value


def _per_channel(c: Value, conv_rank: int, channels: int) -> np.ndarray | Failure:
    """The constant ``c`` as one float64 value per output channel, or why it is not one."""
    data = float_constant(c)
    if data is None or data.ndim > conv_rank:
        return fail("not a floating-point constant of at most the Conv output's rank")
    dims = (1,) * (conv_rank - data.ndim) + data.shape
    if any(d != 1 for i, d in enumerate(dims) if i != 1) or dims[1] not in (1, channels):
        return fail("the constant does not broadcast along the channel axis only")
    return np.broadcast_to(data.astype(np.float64).reshape(-1), (channels,))


def _rank_and_channels(w: Value) -> tuple[int, int] | None:
    """A Conv weight's rank and output-channel count, when the rank (3 or more) and the count are known."""
    shape = w.shape
    if shape is None or len(shape) < 3 or not isinstance(shape[0], int):
        return None
    return len(shape), shape[0]


def _bias(b: Value | None, channels: int) -> np.ndarray | Failure:
    if b is None:
        return np.zeros(channels)
    data = float_constant(b)
    return fail("Conv bias is not a constant") if data is None else data.astype(np.float64).reshape(-1)


def _add_check(ctx: RewriteContext, x, w, c, conv: Node, b=None, **_: Any) -> dict | Failure:
    known = _rank_and_channels(w)
    if known is None or w.elem_type != c.elem_type:
        return fail("Conv weight shape or element type unknown or different")
    rank, channels = known
    added, bias = _per_channel(c, rank, channels), _bias(b, channels)
    for result in (added, bias):
        if isinstance(result, Failure):
            return result
    dtype = float_constant(c).dtype
    return {"new_w": w, "new_b": (bias + added).astype(dtype)}


def _mul_check(ctx: RewriteContext, x, w, c, conv: Node, b=None, **_: Any) -> dict | Failure:
    weight = private_weight(ctx, w)
    if weight is None or weight.ndim < 3 or w.elem_type != c.elem_type:
        return fail("Conv weight is not a private floating-point constant of the constant's type")
    scale, bias = _per_channel(c, weight.ndim, weight.shape[0]), _bias(b, weight.shape[0])
    for result in (scale, bias):
        if isinstance(result, Failure):
            return result
    new_w = weight.astype(np.float64) * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return {"new_w": new_w.astype(weight.dtype), "new_b": (bias * scale).astype(weight.dtype)}


def _replace(op, x, conv: Node, new_w, new_b: np.ndarray, **_: Any) -> Value:
    weight = new_w if isinstance(new_w, Value) else op.const(new_w, name="fused_weight")
    return op.Conv(x, weight, op.const(new_b, name="fused_bias"), _name=conv.name, **attributes_of(conv))


def _rule(name: str, op_type: str, check) -> RewriteRule:
    def pattern(op, x, w, c, b=None):
        return op.op(op_type, op.Conv(x, w, b, _bind="conv"), c, _commute=True)

    return RewriteRule(name, pattern, _replace, check)


RULES = RewriteRuleSet([_rule("add_into_conv", "Add", _add_check), _rule("mul_into_conv", "Mul", _mul_check)])
