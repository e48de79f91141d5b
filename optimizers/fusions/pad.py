"""A constant-mode Pad folded into the pads of the Conv, AveragePool or MaxPool after it.

Only spatial axes may be padded, by non-negative amounts, and the consumer's ``auto_pad`` must be
NOTSET. The padding value must be what the consumer pads with: 0 for Conv, -inf for MaxPool (its own
padding never wins a max, while explicit zeros would). An AveragePool counts explicit zeros in its
divisor, so it is only fused when its own padding is counted too (``count_include_pad=1``) or it
has none, the result then counting every pad, and never with ``ceil_mode``. Pooling pads must
stay below the kernel size.
"""

from __future__ import annotations

import math
from typing import Any

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import attributes_of, string_attr
from onnxgraph.optimizers.rewriter.rule import (
    RewriteContext,
    RewriteRule,
    RewriteRuleSet,
    fail,
)
from onnxgraph.optimizers.rewriter.values import const_ints, const_value, pads_arg
from onnxgraph.value import Value


def _pad_amounts(pad: Node, axes: Value | None, rank: int) -> list[int] | None:
    """The Pad's full ``[begin..., end...]`` list over ``rank`` axes, or None when unknown."""
    amounts = pads_arg(pad)
    if amounts is None:
        return None
    if axes is None:
        return amounts if len(amounts) == 2 * rank else None
    axis_list = const_ints(axes)
    if axis_list is None or len(amounts) != 2 * len(axis_list):
        return None
    full = [0] * (2 * rank)
    for i, axis in enumerate(axis_list):
        full[axis % rank] = amounts[i]
        full[rank + axis % rank] = amounts[len(axis_list) + i]
    return full


def _pad_value(pad: Node, value: Value | None) -> float | None:
    if value is None:
        return float(pad.attr("value", 0.0))
    data = const_value(value)
    return None if data is None or data.size != 1 else float(data.reshape(-1)[0])


def _check_for(expected_value: float):
    def check(
        ctx: RewriteContext,
        x: Value,
        pad: Node,
        consumer: Node,
        value=None,
        axes=None,
        **_: Any,
    ):
        rank = _consumer_rank(consumer, x)
        if rank is None:
            return fail("the input rank is unknown")
        if string_attr(pad, "mode", "constant") != "constant" or _pad_value(pad, value) != expected_value:
            return fail(f"Pad is not constant mode with value {expected_value}")
        if string_attr(consumer, "auto_pad", "NOTSET") != "NOTSET":
            return fail("the consumer uses auto_pad")
        amounts = _pad_amounts(pad, axes, rank)
        if amounts is None or any(a < 0 for a in amounts) or any(amounts[i] for i in (0, 1, rank, rank + 1)):
            return fail("pads are unknown, negative or touch the batch or channel axis")
        spatial = rank - 2
        own = list(consumer.attr("pads", [0] * (2 * spatial)))
        extra = amounts[2:rank] + amounts[rank + 2 :]
        if consumer.op_type == "AveragePool" and (
            consumer.attr("ceil_mode", 0) or (any(own) and not consumer.attr("count_include_pad", 0))
        ):
            return fail("AveragePool would count pads differently")
        new_pads = [o + e for o, e in zip(own, extra, strict=True)]
        kernel = consumer.attr("kernel_shape")
        if consumer.op_type != "Conv" and (
            kernel is None or any(p >= kernel[i % spatial] for i, p in enumerate(new_pads))
        ):
            return fail("pooling pads must stay below the kernel size")
        return {"new_pads": new_pads}

    return check


def _consumer_rank(consumer: Node, x: Value) -> int | None:
    if consumer.op_type == "Conv":
        w = consumer.input(1).shape
        return len(w) if w is not None else None
    kernel = consumer.attr("kernel_shape")
    if kernel is not None:
        return len(kernel) + 2
    return len(x.shape) if x.shape is not None else None


def _replace(op, x: Value, consumer: Node, new_pads: list[int], w=None, b=None, **_: Any) -> Value:
    overrides: dict[str, Any] = {"pads": new_pads}
    if consumer.op_type == "AveragePool":
        overrides["count_include_pad"] = 1
    attrs = attributes_of(consumer, **overrides)
    inputs = (x, w, b) if consumer.op_type == "Conv" else (x,)
    return op.op(consumer.op_type, *inputs, _name=consumer.name, **attrs)


def _conv_pattern(op, x, w, b=None, pads=None, value=None, axes=None):
    return op.Conv(op.Pad(x, pads, value, axes, _bind="pad"), w, b, _bind="consumer")


def _pool_pattern(op_type: str):
    def pattern(op, x, pads=None, value=None, axes=None):
        return op.op(op_type, op.Pad(x, pads, value, axes, _bind="pad"), _bind="consumer")

    return pattern


RULES = RewriteRuleSet(
    [
        RewriteRule("pad_into_conv", _conv_pattern, _replace, _check_for(0.0)),
        RewriteRule("pad_into_averagepool", _pool_pattern("AveragePool"), _replace, _check_for(0.0)),
        RewriteRule("pad_into_maxpool", _pool_pattern("MaxPool"), _replace, _check_for(-math.inf)),
    ]
)
