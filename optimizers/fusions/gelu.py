"""Gelu fusions (opset >= 20): the written-out erf and tanh forms become one Gelu node.

``gelu_erf``:  ``x * 0.5 * (1 + Erf(x / sqrt(2)))`` (also ``x * 0.7071...`` inside the Erf, and the
``0.5`` applied to ``x`` first), as BERT exports write it, becomes ``Gelu(x)``.

``gelu_tanh``: ``0.5 * x * (1 + Tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))``, as GPT-2 exports write
it, becomes ``Gelu(x, approximate="tanh")``.

Constants must equal the formula's to float32 rounding, the input must be float32 (the probe runs
float32), and the model's opset and the installed onnxruntime must have Gelu.
"""

from __future__ import annotations

import math
from typing import Any

from onnx import TensorProto

from onnxgraph.optimizers.fusions.common import float_constant
from onnxgraph.optimizers.fusions.ort_support import standard_op_available
from onnxgraph.optimizers.rewriter.rule import Failure, RewriteContext, RewriteRule, RewriteRuleSet, fail
from onnxgraph.value import Value

_SQRT2 = math.sqrt(2.0)
_TANH_SCALE = math.sqrt(2.0 / math.pi)
_CUBIC = 0.044715


def _is_constant(value: Value, expected: float) -> bool:
    data = float_constant(value)
    return data is not None and data.size == 1 and math.isclose(float(data.reshape(-1)[0]), expected, rel_tol=1e-6)


def _checked(ctx: RewriteContext, x: Value, constants: list[tuple[Value, float]]) -> Failure | None:
    if x.elem_type != TensorProto.FLOAT:
        return fail("only float32 is fused")
    for value, expected in constants:
        if not _is_constant(value, expected):
            return fail(f"a constant is not {expected:.7g}")
    return standard_op_available(ctx, "Gelu")


# ---- erf form ---------------------------------------------------------------------------------------------


def _erf_term(op, x, c, divide: bool):
    inner = op.Div(x, c) if divide else op.Mul(x, c, _commute=True)
    return op.Add(op.Erf(inner), 1.0, _commute=True)


def _erf_half_last(divide: bool):
    def pattern(op, x, c):
        return op.Mul(op.Mul(x, _erf_term(op, x, c, divide), _commute=True), 0.5, _commute=True)

    return pattern


def _erf_half_first(divide: bool):
    def pattern(op, x, c):
        return op.Mul(op.Mul(x, 0.5, _commute=True), _erf_term(op, x, c, divide), _commute=True)

    return pattern


def _erf_check(divide: bool):
    def check(ctx: RewriteContext, x: Value, c: Value, **_: Any) -> Failure | None:
        return _checked(ctx, x, [(c, _SQRT2 if divide else 1.0 / _SQRT2)])

    return check


def _gelu(op, x: Value, **_: Any) -> Value:
    return op.Gelu(x)


# ---- tanh form --------------------------------------------------------------------------------------------


def _tanh_term(op, x, cubic, scale):
    inner = op.Add(x, op.Mul(op.Pow(x, 3.0), cubic, _commute=True), _commute=True)
    return op.Add(op.Tanh(op.Mul(inner, scale, _commute=True)), 1.0, _commute=True)


def _tanh_half_first(op, x, cubic, scale):
    return op.Mul(op.Mul(x, 0.5, _commute=True), _tanh_term(op, x, cubic, scale), _commute=True)


def _tanh_half_last(op, x, cubic, scale):
    return op.Mul(op.Mul(x, _tanh_term(op, x, cubic, scale), _commute=True), 0.5, _commute=True)


def _tanh_check(ctx: RewriteContext, x: Value, cubic: Value, scale: Value, **_: Any) -> Failure | None:
    return _checked(ctx, x, [(cubic, _CUBIC), (scale, _TANH_SCALE)])


def _gelu_tanh(op, x: Value, **_: Any) -> Value:
    return op.Gelu(x, approximate="tanh")


RULES = RewriteRuleSet(
    [
        *[
            RewriteRule("gelu_erf", form(divide), _gelu, _erf_check(divide))
            for form in (_erf_half_last, _erf_half_first)
            for divide in (True, False)
        ],
        RewriteRule("gelu_tanh", _tanh_half_first, _gelu_tanh, _tanh_check),
        RewriteRule("gelu_tanh", _tanh_half_last, _gelu_tanh, _tanh_check),
    ]
)
