"""BatchNormalization (inference mode) folded into the Conv, ConvTranspose or Gemm before it.

With ``s = scale / sqrt(var + epsilon)`` per channel, ``BN(y) = s * y + (bias - mean * s)``; the
producer's weight is scaled by ``s`` along its output-channel axis and its bias becomes
``b * s + bias - mean * s``. Output channels sit on axis 0 of a Conv weight ``(M, C/g, k...)``,
on axis 1 of a ConvTranspose weight ``(C, M/g, k...)`` inside each of its ``g`` groups, and on
the N axis of a Gemm's B. Weights must be constants read by nobody else; the arithmetic runs in
float64.
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


def _bn_affine(ctx: RewriteContext, bn: Node, channels: int, scale, bias, mean, var) -> tuple | Failure:
    """``(s, shift)`` of an inference BatchNormalization over ``channels`` channels, or why not."""
    training = bn.attr("training_mode", 0) or (ctx.scope.opset < 7 and not bn.attr("is_test", 0))
    if training or bn.attr("spatial", 1) != 1:
        return fail("BatchNormalization is not in inference mode with per-channel statistics")
    params = [float_constant(v) for v in (scale, bias, mean, var)]
    if any(p is None or p.size != channels for p in params):
        return fail(f"BatchNormalization parameters are not constants of {channels} channels")
    gamma, beta, mu, sigma2 = (p.astype(np.float64).reshape(-1) for p in params)
    s = gamma / np.sqrt(sigma2 + bn.attr("epsilon", 1e-5))
    return s, beta - mu * s


def _conv_check(ctx: RewriteContext, x, w, b, scale, bias, mean, var, conv: Node, bn: Node) -> dict | Failure:
    weight = private_weight(ctx, w)
    if weight is None or weight.ndim < 3:
        return fail("Conv weight is not a private floating-point constant")
    conv_bias = _optional_bias(b, weight.shape[0])
    if isinstance(conv_bias, Failure):
        return conv_bias
    affine = _bn_affine(ctx, bn, weight.shape[0], scale, bias, mean, var)
    if isinstance(affine, Failure):
        return affine
    s, shift = affine
    new_w = weight.astype(np.float64) * s.reshape((-1,) + (1,) * (weight.ndim - 1))
    return _fused(weight.dtype, new_w, conv_bias * s + shift)


def _conv_transpose_check(ctx: RewriteContext, x, w, b, scale, bias, mean, var, conv: Node, bn: Node) -> dict | Failure:
    weight = private_weight(ctx, w)
    group = conv.attr("group", 1)
    if weight is None or weight.ndim < 3 or weight.shape[0] % group:
        return fail("ConvTranspose weight is not a private floating-point constant")
    channels = weight.shape[1] * group
    conv_bias = _optional_bias(b, channels)
    if isinstance(conv_bias, Failure):
        return conv_bias
    affine = _bn_affine(ctx, bn, channels, scale, bias, mean, var)
    if isinstance(affine, Failure):
        return affine
    s, shift = affine
    grouped = weight.astype(np.float64).reshape((group, weight.shape[0] // group) + weight.shape[1:])
    per_group = s.reshape((group, 1, weight.shape[1]) + (1,) * (weight.ndim - 2))
    new_w = (grouped * per_group).reshape(weight.shape)
    return _fused(weight.dtype, new_w, conv_bias * s + shift)


def _gemm_check(ctx: RewriteContext, x, w, b, scale, bias, mean, var, conv: Node, bn: Node) -> dict | Failure:
    weight = private_weight(ctx, w)
    if weight is None or weight.ndim != 2:
        return fail("Gemm B is not a private 2-D floating-point constant")
    trans_b = conv.attr("transB", 0)
    channels = weight.shape[0] if trans_b else weight.shape[1]
    affine = _bn_affine(ctx, bn, channels, scale, bias, mean, var)
    if isinstance(affine, Failure):
        return affine
    s, shift = affine
    new_w = weight.astype(np.float64) * (s[:, None] if trans_b else s[None, :])
    new_c = shift
    if b is not None:
        c = float_constant(b)
        if c is None or c.ndim > 2:
            return fail("Gemm C is not a floating-point constant")
        new_c = conv.attr("beta", 1.0) * c.astype(np.float64) * s + shift
    return _fused(weight.dtype, new_w, new_c)


def _optional_bias(b: Value | None, channels: int) -> np.ndarray | Failure:
    if b is None:
        return np.zeros(channels)
    data = float_constant(b)
    if data is None or data.size != channels:
        return fail(f"bias is not a constant of {channels} channels")
    return data.astype(np.float64).reshape(-1)


def _fused(dtype: np.dtype, weight: np.ndarray, bias: np.ndarray) -> dict[str, Any]:
    return {"new_w": weight.astype(dtype), "new_b": bias.astype(dtype)}


def _replace(op, x, conv: Node, new_w: np.ndarray, new_b: np.ndarray, **_: Any) -> Value:
    attrs = attributes_of(conv, beta=1.0) if conv.op_type == "Gemm" else attributes_of(conv)
    return op.op(
        conv.op_type,
        x,
        op.const(new_w, name="fused_weight"),
        op.const(new_b, name="fused_bias"),
        _name=conv.name,
        **attrs,
    )


def _rule(producer: str, check) -> RewriteRule:
    def pattern(op, x, w, scale, bias, mean, var, b=None):
        folded = op.op(producer, x, w, b, _bind="conv")
        return op.BatchNormalization(folded, scale, bias, mean, var, _bind="bn")

    return RewriteRule(f"bn_into_{producer.lower()}", pattern, _replace, check)


RULES = RewriteRuleSet(
    [
        _rule("Conv", _conv_check),
        _rule("ConvTranspose", _conv_transpose_check),
        _rule("Gemm", _gemm_check),
    ]
)
