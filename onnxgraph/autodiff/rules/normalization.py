"""Gradient rules of normalizations: Batch, Layer, Instance, Group, Lp and RMS normalization.

They share one identity: with ``xhat = (x - mean) * inv`` over some axes and ``d = dL/dxhat``,
``dL/dx = inv * (d - mean(d) - xhat * mean(d * xhat))`` (RMS drops the ``mean(d)`` term).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxgraph.autodiff.builder import GradBuilder, rank_of, static_shape
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value

_FLOAT = 1


def _mean(b, v, axes):
    return b.reduce("ReduceMean", v, axes, keepdims=True)


def _batch_norm_training(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Batch statistics recomputed (the op outputs none), then three reductions and one pass.

    With ``c = x - mean``, ``inv = 1/sqrt(var + eps)``, ``k = scale * inv`` and n values per channel:
    ``d_bias = sum(g)``, ``d_scale = inv * sum(g * c)`` and
    ``dx = k * g + (-k * d_scale / n) * xhat + (-k * d_bias / n)``, whose last two terms are one
    inference-mode BatchNormalization of x with the batch statistics: a single fused pass. The
    running-statistics gradients (``running = input * momentum + batch * (1 - momentum)``) fold
    into that BatchNormalization's per-channel scale and bias too.
    """
    x, scale = node.input(0), node.input(1)
    g, g_mean, g_var = (list(grads) + [None, None])[:3]
    r, eps, momentum = rank_of(x), node.attr("epsilon", 1e-5), node.attr("momentum", 0.9)
    axes = [0, *range(2, r)]
    share, minus_share = _shares_per_channel(b, x, scale)  # 1 / n, -1 / n
    mean = b.reduce("ReduceMean", x, axes, keepdims=False)
    centered = b.Sub(x, _channel(b, mean, r))
    var = b.Mul(b.reduce("ReduceSumSquare", centered, axes, keepdims=False), share)
    inv = b.Reciprocal(b.Sqrt(b.Add(var, b.scalar(eps, x))))
    gain, scales, shifts, d_scale, d_bias = None, [], [], None, None
    if g is not None:
        d_bias = _per_channel_sum(b, g, r)
        d_scale = b.Mul(_per_channel_sum(b, b.Mul(g, centered), r), inv)
        gain = b.Mul(scale, inv)
        spread = b.Mul(gain, minus_share)
        scales.append(b.Mul(spread, d_scale))
        shifts.append(b.Mul(spread, d_bias))
    if g_mean is not None:  # d batch_mean / dx = 1 / n
        shifts.append(b.Mul(g_mean, b.Mul(share, b.scalar(1 - momentum, x))))
    if g_var is not None:  # d batch_var / dx = 2 c / n (population variance); c = xhat / inv
        scales.append(b.Div(b.Mul(g_var, b.Mul(share, b.scalar(2 * (1 - momentum), x))), inv))
    dx = None
    if b.wants(x):
        affine = b.BatchNormalization(
            x, _sum_or_zero(b, scales, mean), _sum_or_zero(b, shifts, mean), mean, var, epsilon=eps
        )
        dx = affine if gain is None else b.Add(b.Mul(g, _channel(b, gain, r)), affine)
    keep = b.scalar(momentum, x)
    return [
        dx,
        d_scale,
        d_bias,
        b.Mul(g_mean, keep) if g_mean is not None else None,
        b.Mul(g_var, keep) if g_var is not None else None,
    ]


def _shares_per_channel(b, x, scale):
    """(1 / n, -1 / n) for n values per channel of an (N, C, ...) ``x``: constants when its dims are static."""
    dims, channels = static_shape(x), static_shape(scale)
    if dims is not None:
        share = dims[1] / float(np.prod(dims))
        return b.scalar(share, x), b.scalar(-share, x)
    total = b.Cast(b.Size(x), to=x.elem_type)
    if channels is None:
        share = b.Div(b.Cast(b.Size(scale), to=x.elem_type), total)
        return share, b.Neg(share)
    return b.Div(b.scalar(channels[0], x), total), b.Div(b.scalar(-channels[0], x), total)


def _sum_or_zero(b, terms, like):
    """The sum of per-channel ``terms``, zeros shaped like ``like`` when there is none."""
    return b.add_all(terms) if terms else b.zeros_like(like)


def _statistics(b, x, axes, eps):
    """Recomputed (mean, 1/sqrt(var + eps)) over ``axes``, kept as broadcastable dims."""
    mean = _mean(b, x, axes)
    centered = b.Sub(x, mean)
    inv = b.Reciprocal(b.Sqrt(b.Add(_mean(b, b.Mul(centered, centered), axes), b.scalar(eps, x))))
    return mean, inv


def _normalized_input_grad(b, d, xhat, inv, axes, centered=True):
    """dL/dx from ``d`` = dL/dxhat (see the module docstring)."""
    inner = b.Sub(d, b.Mul(xhat, _mean(b, b.Mul(d, xhat), axes)))
    if centered:
        inner = b.Sub(inner, _mean(b, d, axes))
    return b.Mul(inv, inner)


def _channel(b, v, rank):
    """A per-channel vector (C,) shaped (C, 1, ..., 1) to broadcast against (N, C, ...)."""
    return b.unsqueeze(v, list(range(1, rank - 1)))


def _per_channel_sum(b, v, rank):
    return b.sum_to(v, [0, *range(2, rank)], keepdims=False)


@register("BatchNormalization")
def batch_norm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Inference mode: an affine map per channel. Training mode: normalization by the batch
    statistics, whose running averages (outputs 1 and 2) also carry gradient:
    running = input * momentum + batch * (1 - momentum)."""
    x, scale, bias, mean, var = (node.input(i) for i in range(5))
    g, r, eps = grads[0], rank_of(x), node.attr("epsilon", 1e-5)
    if node.attr("training_mode", 0):
        return _batch_norm_training(b, node, grads)
    inv = b.Reciprocal(b.Sqrt(b.Add(var, b.scalar(eps, var))))
    scaled_inv = b.Mul(scale, inv)
    sum_g = _per_channel_sum(b, g, r) if b.wants(bias) or b.wants(mean) else None
    centered = b.Sub(x, _channel(b, mean, r))
    sum_gc = _per_channel_sum(b, b.Mul(g, centered), r) if b.wants(scale) or b.wants(var) else None
    return [
        b.Mul(g, _channel(b, scaled_inv, r)) if b.wants(x) else None,
        b.Mul(sum_gc, inv) if b.wants(scale) else None,
        sum_g if b.wants(bias) else None,
        b.Neg(b.Mul(sum_g, scaled_inv)) if b.wants(mean) else None,
        b.Mul(sum_gc, b.Mul(b.Mul(scaled_inv, b.Mul(inv, inv)), b.scalar(-0.5, x))) if b.wants(var) else None,
    ]


@register("LayerNormalization", broadcast=(1, 2))
def layer_norm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Reuses the forward Mean and InvStdDev outputs; gradients arriving at those outputs are
    added: d mean/dx = 1/n, d inv/dx = -inv^3 (x - mean) / n over the normalized axes."""
    x, scale = node.input(0), node.input(1)
    g, g_mean, g_inv = (list(grads) + [None, None])[:3]
    r = rank_of(x)
    axes = list(range(node.attr("axis", -1) % r, r))
    stash = node.attr("stash_type", _FLOAT)
    mean, inv = b.ensure_output(node, 1, stash), b.ensure_output(node, 2, stash)
    if x.elem_type != stash:
        mean, inv = b.Cast(mean, to=x.elem_type), b.Cast(inv, to=x.elem_type)
    centered = b.Sub(x, mean)
    xhat = b.Mul(centered, inv)
    terms = []
    if g is not None and b.wants(x):
        terms.append(_normalized_input_grad(b, b.Mul(g, scale), xhat, inv, axes))
    count = None
    if (g_mean is not None or g_inv is not None) and b.wants(x):
        count = b.Cast(b.Div(b.Size(x), b.Size(mean)), to=x.elem_type)
    if g_mean is not None and b.wants(x):
        terms.append(b.expand_like(b.Div(_as_x_type(b, g_mean, x), count), x))
    if g_inv is not None and b.wants(x):
        cubed = b.Mul(inv, b.Mul(inv, inv))
        terms.append(b.Neg(b.Div(b.Mul(b.Mul(_as_x_type(b, g_inv, x), cubed), centered), count)))
    dx = b.add_all(terms)
    if g is None:
        return [dx, None, None]
    return [dx, b.Mul(g, xhat), g][: len(node.inputs)]


def _as_x_type(b, v, x):
    return v if v.elem_type == x.elem_type else b.Cast(v, to=x.elem_type)


@register("InstanceNormalization")
def instance_norm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, scale = node.input(0), node.input(1)
    g, r = grads[0], rank_of(x)
    axes = list(range(2, r))
    mean, inv = _statistics(b, x, axes, node.attr("epsilon", 1e-5))
    xhat = b.Mul(b.Sub(x, mean), inv)
    dx = _normalized_input_grad(b, b.Mul(g, _channel(b, scale, r)), xhat, inv, axes)
    return [dx, _per_channel_sum(b, b.Mul(g, xhat), r), _per_channel_sum(b, g, r)]


@register("GroupNormalization")
def group_norm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Statistics over (C/G, spatial) per group; scale and bias per channel (opset 21 semantics)."""
    x, scale = node.input(0), node.input(1)
    if b.opset < 21:
        raise GradientError("the gradient of GroupNormalization needs opset 21 (the opset 18 form is deprecated)")
    g, r, groups = grads[0], rank_of(x), node.attr("num_groups")
    grouped = b.ints([0, groups, -1])
    mean, inv = _statistics(b, b.Reshape(x, grouped), [2], node.attr("epsilon", 1e-5))
    xhat3 = b.Mul(b.Sub(b.Reshape(x, grouped), mean), inv)
    d3 = b.Reshape(b.Mul(g, _channel(b, scale, r)), grouped)
    dx = b.reshape_like(_normalized_input_grad(b, d3, xhat3, inv, [2]), x)
    xhat = b.reshape_like(xhat3, x)
    return [dx, _per_channel_sum(b, b.Mul(g, xhat), r), _per_channel_sum(b, g, r)]


@register("LpNormalization")
def lp_norm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, y, g = node.input(0), node.outputs[0], grads[0]
    axis, p = node.attr("axis", -1), node.attr("p", 2)
    if p == 2:
        norm = b.reduce("ReduceL2", x, [axis])
        return [b.Div(b.Sub(g, b.Mul(y, b.ReduceSum(b.Mul(g, y), b.ints([axis]), keepdims=1))), norm)]
    norm = b.reduce("ReduceL1", x, [axis])  # y = x / sum|x|
    dot = b.ReduceSum(b.Mul(g, y), b.ints([axis]), keepdims=1)
    return [b.Div(b.Sub(g, b.Mul(b.Sign(x), dot)), norm)]


@register("RMSNormalization", broadcast=(1,))
def rms_norm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, scale = node.input(0), node.input(1)
    g, r = grads[0], rank_of(x)
    axes = list(range(node.attr("axis", -1) % r, r))
    inv = b.Reciprocal(b.Sqrt(b.Add(_mean(b, b.Mul(x, x), axes), b.scalar(node.attr("epsilon", 1e-5), x))))
    xhat = b.Mul(x, inv)
    dx = _normalized_input_grad(b, b.Mul(g, scale), xhat, inv, axes, centered=False)
    return [dx, b.Mul(g, xhat)]
