"""Gradient rules of reductions (axes as attribute or input, keepdims both ways) and CumSum."""

from __future__ import annotations

from collections.abc import Sequence

from onnxgraph.autodiff.builder import GradBuilder, rank_of
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value


def reduced_axes(b, node):
    """The reduced axes: a list of ints, a Value (dynamic axes input), or None for all axes."""
    axes = node.attr("axes")
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        static = b.constant_ints(node.inputs[1])
        axes = static if static is not None else node.inputs[1]
    if isinstance(axes, list) and not axes:
        axes = None
    return axes


def expand_back(b, node, v, axes):
    """A reduced value (``g`` or ``y``) broadcast back to the input's shape."""
    x = node.input(0)
    if not node.attr("keepdims", 1) and axes is not None:
        v = b.Unsqueeze(v, axes) if not isinstance(axes, list) else b.unsqueeze(v, axes)
    return b.expand_like(v, x)


def _is_noop(node, axes) -> bool:
    return axes is None and bool(node.attr("noop_with_empty_axes", 0))


def count_ratio(b, x, y):
    """Elements of ``x`` per element of ``y`` (the mean's divisor) in ``x``'s element type."""
    xs, ys = x.shape, y.shape
    if xs is not None and ys is not None and all(isinstance(d, int) for d in (*xs, *ys)):
        n = 1
        for d in xs:
            n *= d
        for d in ys:
            n //= d
        return b.scalar(n, x)
    return b.Cast(b.Div(b.Size(x), b.Size(y)), to=x.elem_type)


def extremum_grad(b, node, g, axes):
    """Max/min reductions: ``g`` goes to the elements equal to the result, split among ties."""
    x, y = node.input(0), node.outputs[0]
    hit = b.Cast(b.Equal(x, expand_back(b, node, y, axes)), to=x.elem_type)
    sum_axes = list(range(rank_of(x))) if axes is None else axes
    ties = b.ReduceSum(hit, b.ints(sum_axes) if isinstance(sum_axes, list) else sum_axes, keepdims=1)
    return b.Div(b.Mul(hit, expand_back(b, node, g, axes)), ties)


@register(
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSumExp",
    "ReduceSumSquare",
    "ReduceLogSum",
    differentiable=(0,),
)
def reduce(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, y, g = node.input(0), node.outputs[0], grads[0]
    axes = reduced_axes(b, node)
    if _is_noop(node, axes):
        return [_elementwise_noop(b, node.op_type, x, g)]
    op = node.op_type
    if op in ("ReduceMax", "ReduceMin"):
        return [extremum_grad(b, node, g, axes)]
    gx = expand_back(b, node, g, axes)
    if op == "ReduceSum":
        return [gx]
    if op == "ReduceMean":
        return [b.Div(gx, count_ratio(b, x, y))]
    yx = expand_back(b, node, y, axes)
    if op == "ReduceProd":
        return [b.Div(b.Mul(gx, yx), x)]
    if op == "ReduceL1":
        return [b.Mul(gx, b.Sign(x))]
    if op == "ReduceL2":
        return [b.Div(b.Mul(gx, x), yx)]
    if op == "ReduceLogSumExp":
        return [b.Mul(gx, b.Exp(b.Sub(x, yx)))]
    if op == "ReduceSumSquare":
        return [b.Mul(gx, b.Mul(x, b.scalar(2, x)))]
    return [b.Div(gx, b.Exp(yx))]  # ReduceLogSum: y = log(sum x)


def _elementwise_noop(b, op, x, g):
    """noop_with_empty_axes=1 and no axes: the op is elementwise on x."""
    if op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd"):
        return g
    if op in ("ReduceL1", "ReduceL2"):
        return b.Mul(g, b.Sign(x))
    if op == "ReduceSumSquare":
        return b.Mul(g, b.Mul(x, b.scalar(2, x)))
    if op == "ReduceLogSum":
        return b.Div(g, x)
    return g  # ReduceLogSumExp of one element is the identity


@register("CumSum", differentiable=(0,))
def cumsum(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    reverse = 1 - node.attr("reverse", 0)
    return [b.CumSum(grads[0], node.inputs[1], exclusive=node.attr("exclusive", 0), reverse=reverse)]
