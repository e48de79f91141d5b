"""Gradient rules of elementwise ops: arithmetic, math functions, activations, selection, casts."""

from __future__ import annotations

import math
from collections.abc import Sequence

import onnx

from onnxgraph.autodiff.builder import GradBuilder, upstream
from onnxgraph.autodiff.registry import ALL, register, register_stop
from onnxgraph.node import Node
from onnxgraph.value import Value

register_stop(
    "Sign",
    "Floor",
    "Ceil",
    "Round",  # piecewise constant: zero gradient almost everywhere
    "Equal",
    "Less",
    "LessOrEqual",
    "Greater",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "IsNaN",
    "IsInf",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "BitwiseNot",
    "BitShift",
    family="elementwise",
)


def _only(b, where, g):
    """``g`` where ``where`` holds, zero elsewhere."""
    return b.Where(where, g, b.scalar(0, g))


def _scale(b, g, factor, like):
    return b.Mul(g, b.scalar(factor, like))


# -- arithmetic ---------------------------------------------------------------------------------
@register("Add", broadcast=ALL)
def add(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [upstream(grads), upstream(grads)]


@register("Sub", broadcast=ALL)
def sub(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    g = upstream(grads)
    return [g, b.Neg(g) if b.wants(node.inputs[1]) else None]


@register("Mul", broadcast=ALL)
def mul(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    (x, y), g = node.inputs, upstream(grads)
    return [b.Mul(g, y) if b.wants(x) else None, b.Mul(g, x) if b.wants(y) else None]


@register("Div", broadcast=ALL)
def div(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    (x, y), g, out = node.inputs, upstream(grads), node.outputs[0]
    return [
        b.Div(g, y) if b.wants(x) else None,
        b.Neg(b.Div(b.Mul(g, out), y)) if b.wants(y) else None,
    ]


@register("Pow", broadcast=ALL)
def pow_(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, e, g, out = node.input(0), node.input(1), upstream(grads), node.outputs[0]
    dx = de = None
    if b.wants(x):
        e_x = b.Cast(e, to=x.elem_type) if e.elem_type != x.elem_type else e
        dx = b.Mul(g, b.Mul(e_x, b.Pow(x, b.Sub(e_x, b.scalar(1, x)))))
    if b.wants(e):
        de = b.Mul(g, b.Mul(out, b.Log(x)))
        de = b.Cast(de, to=e.elem_type) if e.elem_type != x.elem_type else de
    return [dx, de]


@register("Neg")
def neg(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Neg(upstream(grads))]


@register("Abs")
def abs_(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Mul(upstream(grads), b.Sign(node.input(0)))]


@register("Reciprocal")
def reciprocal(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y = node.outputs[0]
    return [b.Neg(b.Mul(upstream(grads), b.Mul(y, y)))]


@register("Sqrt")
def sqrt(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y = node.outputs[0]
    return [b.Div(upstream(grads), b.Mul(y, b.scalar(2, y)))]


@register("Exp")
def exp(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Mul(upstream(grads), node.outputs[0])]


@register("Log")
def log(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Div(upstream(grads), node.input(0))]


@register("Sum", broadcast=ALL)
def sum_(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [upstream(grads)] * len(node.inputs)


@register("Mean", broadcast=ALL)
def mean(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    g = upstream(grads)
    return [_scale(b, g, 1.0 / len(node.inputs), g)] * len(node.inputs)


@register("Min", "Max", broadcast=ALL)
def min_max(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Inputs tied for the extremum share its gradient evenly (as ReduceMax/ReduceMin do), so
    Max(x, x) and Max(x, Expand(x)) have the identity's gradient, not twice it."""
    y, g = node.outputs[0], upstream(grads)
    if len(node.inputs) == 1:
        return [g]
    hits = [b.Cast(b.Equal(x, y), to=y.elem_type) for x in node.inputs]
    share = b.Div(g, b.Sum(*hits))
    return [b.Mul(share, hit) if b.wants(x) else None for x, hit in zip(node.inputs, hits)]


# -- trigonometric and hyperbolic ---------------------------------------------------------------
def _one_plus(b, t, sign=1.0):
    """1 + sign * t."""
    return b.Add(b.scalar(1, t), t) if sign > 0 else b.Sub(b.scalar(1, t), t)


@register("Sin")
def sin(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Mul(upstream(grads), b.Cos(node.input(0)))]


@register("Cos")
def cos(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Neg(b.Mul(upstream(grads), b.Sin(node.input(0))))]


@register("Tan")
def tan(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y = node.outputs[0]
    return [b.Mul(upstream(grads), _one_plus(b, b.Mul(y, y)))]


@register("Asin", "Acos")
def asin_acos(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    d = b.Div(upstream(grads), b.Sqrt(_one_plus(b, b.Mul(x, x), -1)))
    return [d if node.op_type == "Asin" else b.Neg(d)]


@register("Atan")
def atan(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    return [b.Div(upstream(grads), _one_plus(b, b.Mul(x, x)))]


@register("Sinh")
def sinh(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Mul(upstream(grads), b.Cosh(node.input(0)))]


@register("Cosh")
def cosh(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Mul(upstream(grads), b.Sinh(node.input(0)))]


@register("Asinh")
def asinh(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    return [b.Div(upstream(grads), b.Sqrt(_one_plus(b, b.Mul(x, x))))]


@register("Acosh")
def acosh(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    return [b.Div(upstream(grads), b.Sqrt(b.Sub(b.Mul(x, x), b.scalar(1, x))))]


@register("Atanh")
def atanh(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    return [b.Div(upstream(grads), _one_plus(b, b.Mul(x, x), -1))]


@register("Tanh")
def tanh(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y = node.outputs[0]
    return [b.Mul(upstream(grads), _one_plus(b, b.Mul(y, y), -1))]


@register("Erf")
def erf(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    return [b.Mul(upstream(grads), _scale(b, b.Exp(b.Neg(b.Mul(x, x))), 2 / math.sqrt(math.pi), x))]


# -- activations --------------------------------------------------------------------------------
@register("Sigmoid")
def sigmoid(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y = node.outputs[0]
    return [b.Mul(upstream(grads), b.Mul(y, _one_plus(b, y, -1)))]


@register("HardSigmoid")
def hard_sigmoid(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    alpha, beta = node.attr("alpha", 0.2), node.attr("beta", 0.5)
    t = b.Add(_scale(b, x, alpha, x), b.scalar(beta, x))
    inside = b.And(b.Greater(t, b.scalar(0, x)), b.Less(t, b.scalar(1, x)))
    return [_only(b, inside, _scale(b, upstream(grads), alpha, x))]


@register("HardSwish")
def hard_swish(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, g = node.input(0), upstream(grads)
    slope = b.Add(_scale(b, x, 1 / 3, x), b.scalar(0.5, x))  # d/dx x*(x/6+1/2) = x/3 + 1/2
    inside = b.And(b.Greater(x, b.scalar(-3, x)), b.Less(x, b.scalar(3, x)))
    above = b.Cast(b.GreaterOrEqual(x, b.scalar(3, x)), to=x.elem_type)
    return [b.Mul(g, b.Where(inside, slope, above))]


@register("Relu")
def relu(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """``g`` times the 0/1 mask ``x > 0``: Cast + Mul runs faster on onnxruntime than Where."""
    x, g = node.input(0), upstream(grads)
    mask = b.Greater(x, b.scalar(0, x))
    return [b.Mul(g, b.Cast(mask, to=x.elem_type or g.elem_type or onnx.TensorProto.FLOAT))]


@register("LeakyRelu")
def leaky_relu(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, g = node.input(0), upstream(grads)
    return [b.Where(b.Greater(x, b.scalar(0, x)), g, _scale(b, g, node.attr("alpha", 0.01), g))]


@register("PRelu", broadcast=ALL)
def prelu(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, slope, g = node.input(0), node.input(1), upstream(grads)
    negative = b.Less(x, b.scalar(0, x))
    dx = b.Where(negative, b.Mul(g, slope), g) if b.wants(x) else None
    dslope = _only(b, negative, b.Mul(g, x)) if b.wants(slope) else None
    return [dx, dslope]


@register("Elu", "Selu", "Celu")
def elu_family(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """y = scale*x for x > 0; else y = scale*alpha*(exp(x/a) - 1) with a = alpha (Celu) or 1."""
    x, y, g = node.input(0), node.outputs[0], upstream(grads)
    if node.op_type == "Selu":
        alpha, scale = (
            node.attr("alpha", 1.67326319217681884765625),
            node.attr("gamma", 1.05070102214813232421875),
        )
        below = b.Add(y, b.scalar(alpha * scale, x))
    elif node.op_type == "Elu":
        alpha, scale = node.attr("alpha", 1.0), 1.0
        below = b.Add(y, b.scalar(alpha, x))
    else:
        alpha, scale = node.attr("alpha", 1.0), 1.0
        below = b.Exp(b.Div(x, b.scalar(alpha, x)))
    return [b.Mul(g, b.Where(b.Greater(x, b.scalar(0, x)), b.scalar(scale, x), below))]


@register("Softplus")
def softplus(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [b.Mul(upstream(grads), b.Sigmoid(node.input(0)))]


@register("Softsign")
def softsign(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    d = _one_plus(b, b.Abs(node.input(0)))
    return [b.Div(upstream(grads), b.Mul(d, d))]


@register("Mish")
def mish(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    t = b.Tanh(b.Softplus(x))
    d = b.Add(t, b.Mul(b.Mul(x, b.Sigmoid(x)), _one_plus(b, b.Mul(t, t), -1)))
    return [b.Mul(upstream(grads), d)]


@register("Gelu")
def gelu(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x = node.input(0)
    if node.attr("approximate", "none") == "tanh":
        c, k = math.sqrt(2 / math.pi), 0.044715
        x2 = b.Mul(x, x)
        t = b.Tanh(_scale(b, b.Mul(x, _one_plus(b, _scale(b, x2, k, x))), c, x))
        du = _scale(b, _one_plus(b, _scale(b, x2, 3 * k, x)), c, x)
        d = b.Mul(
            b.scalar(0.5, x),
            b.Add(_one_plus(b, t), b.Mul(b.Mul(x, _one_plus(b, b.Mul(t, t), -1)), du)),
        )
    else:
        cdf = b.Mul(b.scalar(0.5, x), _one_plus(b, b.Erf(_scale(b, x, 1 / math.sqrt(2), x))))
        pdf = _scale(b, b.Exp(_scale(b, b.Mul(x, x), -0.5, x)), 1 / math.sqrt(2 * math.pi), x)
        d = b.Add(cdf, b.Mul(x, pdf))
    return [b.Mul(upstream(grads), d)]


# -- selection and identity ---------------------------------------------------------------------
@register("Clip", broadcast=ALL)
def clip(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, g = node.input(0), upstream(grads)
    lo = node.inputs[1] if len(node.inputs) > 1 else None
    hi = node.inputs[2] if len(node.inputs) > 2 else None
    below = b.Less(x, lo) if lo is not None else None
    above = b.Greater(x, hi) if hi is not None else None
    outside = b.Or(below, above) if below is not None and above is not None else below or above
    dx = g if outside is None else b.Where(outside, b.scalar(0, g), g)
    return [
        dx,
        _only(b, below, g) if lo is not None and b.wants(lo) else None,
        _only(b, above, g) if hi is not None and b.wants(hi) else None,
    ]


@register("Where", differentiable=(1, 2), broadcast=ALL)
def where(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    cond, x, y, g = node.input(0), node.input(1), node.input(2), upstream(grads)
    zero = b.scalar(0, g)
    return [
        None,
        b.Where(cond, g, zero) if b.wants(x) else None,
        b.Where(cond, zero, g) if b.wants(y) else None,
    ]


@register("Cast", "CastLike")
def cast(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """CastLike's second input only lends its type: its gradient is zero."""
    return [b.Cast(upstream(grads), to=node.input(0).elem_type), None]


@register("Identity")
def identity(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return [upstream(grads)]


@register("Dropout", differentiable=(0, 1), outputs=(0,))
def dropout(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    """Inference mode is the identity. Training mode: y = x * mask / (1 - ratio) with the mask the
    forward pass drew (its second output), so dy/dratio = y / (1 - ratio)."""
    x, rest, g, y = node.input(0), node.inputs[1:], upstream(grads), node.outputs[0]
    ratio = rest[0] if rest else None
    training = rest[1] if len(rest) > 1 else None
    if training is None:
        return [g, None]
    keep = _one_plus(b, b.Cast(ratio, to=x.elem_type) if ratio is not None else b.scalar(0.5, x), -1)
    mask = b.Cast(b.ensure_output(node, 1, onnx.TensorProto.BOOL), to=x.elem_type)
    dx = b.Where(training, b.Div(b.Mul(g, mask), keep), g)
    d_ratio = None
    if b.wants(ratio):
        per_element = b.Where(training, b.Div(b.Mul(g, y), keep), b.scalar(0, x))
        d_ratio = b.Cast(b.ReduceSum(per_element, keepdims=0), to=ratio.elem_type)
    return [dx, d_ratio]
