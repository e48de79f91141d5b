"""Normalization fusions: written-out LayerNorm and RMSNorm become LayerNormalization / RMSNormalization.

``layernorm`` (opset >= 17) matches what exporters write below opset 17::

    mean = ReduceMean(x); dev = x - mean
    y = dev / Sqrt(ReduceMean(Pow(dev, 2)) + eps) [* scale] [+ bias]

``rmsnorm`` (opset >= 23) matches the llama-style root-mean-square norm::

    y = x / Sqrt(ReduceMean(Pow(x, 2)) + eps) * scale      (or x * Reciprocal(Sqrt(...)) * scale, or
                                                            x * Div(1, Sqrt(...)) * scale: TorchScript's rsqrt)

Both reduce over trailing axes with ``keepdims``; the scale (and bias) must have the normalized
shape (leading 1s are dropped from constants). Only float32 inputs are fused: the fused ops compute
in float32 (``stash_type``), so this never changes precision. Each rule also needs the op in the
model's opset and in the installed onnxruntime (:mod:`~onnxgraph.optimizers.fusions.ort_support`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import float_constant
from onnxgraph.optimizers.fusions.ort_support import standard_op_available
from onnxgraph.optimizers.rewriter.rule import Failure, RewriteContext, RewriteRule, RewriteRuleSet, fail
from onnxgraph.optimizers.rewriter.values import axes_arg
from onnxgraph.value import Value


def trailing_axis(x: Value, *reductions: Node) -> int | Failure:
    """The first normalized axis (negative) when every ReduceMean of ``reductions`` keeps dims and
    reduces the same trailing axes of ``x``."""
    axes = [axes_arg(node) for node in reductions]
    if any(a is None or a != axes[0] for a in axes) or not axes[0]:
        return fail("the ReduceMeans do not reduce the same constant axes")
    if any(node.attr("keepdims", 1) != 1 for node in reductions):
        return fail("a ReduceMean drops the reduced axes")
    shape = x.shape
    rank = len(shape) if shape is not None else None
    first = axes[0]
    if any(a >= 0 for a in first):
        if rank is None:
            return fail("positive reduction axes on an input of unknown rank")
        first = [a - rank for a in first]
    if sorted(first) != list(range(-len(first), 0)):
        return fail(f"reduction axes {axes[0]} are not the trailing axes")
    return -len(first)


def affine_param(value: Value | None, x: Value, axis: int, name: str) -> dict[str, Any] | Failure:
    """``{name: value}`` when ``value`` has the normalized shape of ``x`` (a constant with extra
    leading 1s is handed on as its data with them dropped)."""
    if value is None:
        return {name: None}
    if x.shape is None or any(not isinstance(d, int) for d in x.shape[axis:]):
        return fail("the normalized dimensions are not static")
    normalized = tuple(x.shape[axis:])
    shape = value.shape
    if shape is None or value.elem_type != TensorProto.FLOAT:
        return fail(f"{name} is not a float32 value of known shape")
    if tuple(shape) == normalized:
        return {name: value}
    stripped = tuple(shape)
    while len(stripped) > len(normalized) and stripped[0] == 1:
        stripped = stripped[1:]
    data = float_constant(value)
    if stripped != normalized or data is None:
        return fail(f"{name} of shape {shape} does not have the normalized shape {normalized}")
    return {name: data.reshape(normalized)}


def unit_scale(x: Value, axis: int) -> dict[str, Any] | Failure:
    """``{"scale": ones}`` of the normalized shape of ``x``, for a norm written without a scale."""
    shape = x.shape
    if shape is None or any(not isinstance(d, int) for d in shape[axis:]):
        return fail("the normalized dimensions are not static")
    return {"scale": np.ones(tuple(shape[axis:]), np.float32)}


def _common(ctx: RewriteContext, op_type: str, x: Value, eps: Value, *reductions: Node) -> dict[str, Any] | Failure:
    if x.elem_type != TensorProto.FLOAT:
        return fail("only float32 is fused (the fused op computes in float32)")
    epsilon = float_constant(eps)
    if epsilon is None or epsilon.size != 1:
        return fail("epsilon is not a constant scalar")
    axis = trailing_axis(x, *reductions)
    if isinstance(axis, Failure):
        return axis
    unavailable = standard_op_available(ctx, op_type)
    if unavailable is not None:
        return unavailable
    return {"axis": axis, "epsilon": float(epsilon.reshape(-1)[0])}


def _taken_by_next(value_owner: Node, op_type: str) -> bool:
    """Whether the only reader of ``value_owner``'s output is an ``op_type`` node (which a longer
    pattern of the same family then takes in)."""
    readers = value_owner.outputs[0].consumers()
    return len(readers) == 1 and readers[0].op_type == op_type and not value_owner.outputs[0].is_graph_output()


def _as_value(op, data: Value | np.ndarray | None) -> Value | None:
    return data if data is None or isinstance(data, Value) else op.const(data)


# ---- LayerNormalization ---------------------------------------------------------------------------------


def _ln_core(op, x, eps, axes_mean, axes_var):
    dev = op.Sub(x, op.ReduceMean(x, axes_mean, _bind="mean"))
    variance = op.ReduceMean(op.Pow(dev, 2.0), axes_var, _bind="var")
    return op.Div(dev, op.Sqrt(op.Add(variance, eps, _commute=True)), _bind="normed")


def _ln_full(op, x, eps, scale, bias, axes_mean=None, axes_var=None):
    scaled = op.Mul(_ln_core(op, x, eps, axes_mean, axes_var), scale, _commute=True, _bind="scaled")
    return op.Add(scaled, bias, _commute=True)


def _ln_scale(op, x, eps, scale, axes_mean=None, axes_var=None):
    return op.Mul(_ln_core(op, x, eps, axes_mean, axes_var), scale, _commute=True, _bind="scaled")


def _ln_plain(op, x, eps, axes_mean=None, axes_var=None):
    return _ln_core(op, x, eps, axes_mean, axes_var)


def _ln_check(
    ctx: RewriteContext,
    x: Value,
    eps: Value,
    mean: Node,
    var: Node,
    normed: Node,
    scale: Value | None = None,
    bias: Value | None = None,
    scaled: Node | None = None,
    **_: Any,
) -> dict[str, Any] | Failure:
    if scale is None and _taken_by_next(normed, "Mul"):
        return fail("the Mul after it carries the scale (the longer pattern fuses it)")
    if scale is not None and bias is None and scaled is not None and _taken_by_next(scaled, "Add"):
        return fail("the Add after it carries the bias (the longer pattern fuses it)")
    found = _common(ctx, "LayerNormalization", x, eps, mean, var)
    if isinstance(found, Failure):
        return found
    params: dict[str, Any] = {}
    for name, value in (("scale", scale), ("bias", bias)):
        param = affine_param(value, x, found["axis"], name)
        if isinstance(param, Failure):
            return param
        params.update(param)
    if scale is None:
        ones = unit_scale(x, found["axis"])
        if isinstance(ones, Failure):
            return ones
        params.update(ones)
    return {**found, **params}


def _ln_replacement(op, x: Value, axis: int, epsilon: float, scale, bias=None, **_: Any) -> Value:
    return op.LayerNormalization(x, _as_value(op, scale), _as_value(op, bias), axis=axis, epsilon=epsilon)


# ---- RMSNormalization ------------------------------------------------------------------------------------


def _rms_denominator(op, x, eps, axes):
    variance = op.ReduceMean(op.Pow(x, 2.0), axes, _bind="var")
    return op.Sqrt(op.Add(variance, eps, _commute=True))


def _rms_plain_div(op, x, eps, axes=None):
    return op.Div(x, _rms_denominator(op, x, eps, axes), _bind="normed")


def _rms_plain_reciprocal(op, x, eps, axes=None):
    return op.Mul(x, op.Reciprocal(_rms_denominator(op, x, eps, axes)), _commute=True, _bind="normed")


def _rms_plain_one_over(op, x, eps, axes=None):
    """``torch.rsqrt`` as the TorchScript exporter writes it: ``Div(1, Sqrt(...))``."""
    return op.Mul(x, op.Div(1.0, _rms_denominator(op, x, eps, axes)), _commute=True, _bind="normed")


def _rms_div(op, x, eps, scale, axes=None):
    return op.Mul(_rms_plain_div(op, x, eps, axes), scale, _commute=True)


def _rms_reciprocal(op, x, eps, scale, axes=None):
    return op.Mul(_rms_plain_reciprocal(op, x, eps, axes), scale, _commute=True)


def _rms_one_over(op, x, eps, scale, axes=None):
    return op.Mul(_rms_plain_one_over(op, x, eps, axes), scale, _commute=True)


def _rms_check(
    ctx: RewriteContext, x: Value, eps: Value, var: Node, normed: Node, scale: Value | None = None, **_: Any
) -> dict[str, Any] | Failure:
    if scale is None and _taken_by_next(normed, "Mul"):
        return fail("the Mul after it carries the scale (the longer pattern fuses it)")
    producer = x.producer()
    if producer is not None and producer.op_type == "Sub":
        mean = producer.inputs[1].producer() if producer.inputs[1] is not None else None
        if mean is not None and mean.op_type == "ReduceMean" and mean.inputs[0] is producer.inputs[0]:
            return fail("the input is centred: this is a LayerNormalization")
    found = _common(ctx, "RMSNormalization", x, eps, var)
    if isinstance(found, Failure):
        return found
    param = affine_param(scale, x, found["axis"], "scale") if scale is not None else unit_scale(x, found["axis"])
    return param if isinstance(param, Failure) else {**found, **param}


def _rms_replacement(op, x: Value, axis: int, epsilon: float, scale, **_: Any) -> Value:
    return op.RMSNormalization(x, _as_value(op, scale), axis=axis, epsilon=epsilon)


RULES = RewriteRuleSet(
    [
        RewriteRule("layernorm", _ln_full, _ln_replacement, _ln_check),
        RewriteRule("layernorm", _ln_scale, _ln_replacement, _ln_check),
        RewriteRule("layernorm", _ln_plain, _ln_replacement, _ln_check),
        RewriteRule("rmsnorm", _rms_div, _rms_replacement, _rms_check),
        RewriteRule("rmsnorm", _rms_reciprocal, _rms_replacement, _rms_check),
        RewriteRule("rmsnorm", _rms_plain_div, _rms_replacement, _rms_check),
        RewriteRule("rmsnorm", _rms_plain_reciprocal, _rms_replacement, _rms_check),
        RewriteRule("rmsnorm", _rms_one_over, _rms_replacement, _rms_check),
        RewriteRule("rmsnorm", _rms_plain_one_over, _rms_replacement, _rms_check),
    ]
)
