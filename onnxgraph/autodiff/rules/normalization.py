"""Gradient rules of normalizations: Batch, Layer, Instance, Group, Lp and RMS normalization.

They share one identity: with ``xhat = (x - mean) * inv`` over some axes and ``d = dL/dxhat``,
``dL/dx = inv * (d - mean(d) - xhat * mean(d * xhat))`` (RMS drops the ``mean(d)`` term).
"""

from __future__ import annotations

from collections.abc import Sequence

from onnxgraph.autodiff.builder import GradBuilder, rank_of
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value

_FLOAT = 1


def _mean(b, v, axes):
    return b.reduce("ReduceMean", v, axes, keepdims=True)


def _batch_norm_training(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, scale = node.input(0), node.input(1)
    g, g_mean, g_var = (list(grads) + [None, None])[:3]
    r, eps, momentum = rank_of(x), node.attr("epsilon", 1e-5), node.attr("momentum", 0.9)
    axes = [0, *range(2, r)]
    batch_mean, inv = _statistics(b, x, axes, eps)
    centered = b.Sub(x, batch_mean)
    xhat = b.Mul(centered, inv)
    dx_terms, d_scale, d_bias = [], None, None
    if g is not None:
        dx_terms.append(_normalized_input_grad(b, b.Mul(g, _channel(b, scale, r)), xhat, inv, axes))
        d_scale, d_bias = _per_channel_sum(b, b.Mul(g, xhat), r), _per_channel_sum(b, g, r)
    count = b.Cast(b.Div(b.Size(x), b.Size(scale)), to=x.elem_type)
    fresh = b.scalar(1 - momentum, x)
    if g_mean is not None:  # d batch_mean / dx = 1 / count
        dx_terms.append(b.Div(b.Mul(_channel(b, g_mean, r), fresh), count))
    if g_var is not None:  # batch variance (population): d / dx = 2 (x - mean) / count
        weight = b.Mul(_channel(b, g_var, r), b.scalar(2 * (1 - momentum), x))
        dx_terms.append(b.Div(b.Mul(weight, centered), count))
    keep = b.scalar(momentum, x)
    return [
        b.add_all(dx_terms),
        d_scale,
        d_bias,
        b.Mul(g_mean, keep) if g_mean is not None else None,
        b.Mul(g_var, keep) if g_var is not None else None,
    ]


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
