"""Gemm fusions: MatMul + Add becomes a Gemm, and 2-D Transposes of Gemm inputs become trans flags.

``MatMul(A, B) + C`` is ``Gemm(A, B, C)`` only when A and B are known to be 2-D (MatMul of other
ranks batches or promotes) and C broadcasts to the product's ``(M, N)`` shape without enlarging it
(Gemm broadcasts C one way only). A Transpose feeding Gemm's A or B is 2-D (Gemm's inputs are), so
it toggles ``transA`` / ``transB``.
"""

from __future__ import annotations

from typing import Any

import onnx

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import attributes_of
from onnxgraph.optimizers.rewriter.rule import (
    Failure,
    RewriteContext,
    RewriteRule,
    RewriteRuleSet,
    fail,
)
from onnxgraph.value import Value

_GEMM_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE})


def _matmul_add_check(ctx: RewriteContext, a: Value, b: Value, c: Value, **_: Any) -> dict | Failure:
    a_shape, b_shape, c_shape = a.shape, b.shape, c.shape
    if a_shape is None or b_shape is None or len(a_shape) != 2 or len(b_shape) != 2:
        return fail("MatMul inputs are not known to be 2-D")
    if a.elem_type not in _GEMM_TYPES or c.elem_type != a.elem_type:
        return fail("element type unsupported by Gemm or different for C")
    if c_shape is None or len(c_shape) > 2:
        return fail("C's shape is unknown or above 2-D")
    product = (a_shape[0], b_shape[1])
    for c_dim, dim in zip(reversed(c_shape), reversed(product), strict=False):
        if c_dim != 1 and (c_dim is None or c_dim != dim):
            return fail(f"C of shape {c_shape} does not broadcast to {product} one way")
    return None


def _matmul_add_to_gemm(op, a: Value, b: Value, c: Value, **_: Any) -> Value:
    return op.Gemm(a, b, c)


def _transpose_check(ctx: RewriteContext, t: Node, **_: Any) -> Failure | None:
    perm = t.attr("perm")
    return None if perm is None or list(perm) == [1, 0] else fail("not a 2-D transpose")


def _toggle(flag: str):
    def replacement(op, a: Value, b: Value, gemm: Node, c: Value | None = None, **_: Any) -> Value:
        attrs = attributes_of(gemm, **{flag: 1 - gemm.attr(flag, 0)})
        return op.Gemm(a, b, c, _name=gemm.name, **attrs)

    return replacement


def _transpose_a(op, a, b, c=None):
    return op.Gemm(op.Transpose(a, _bind="t"), b, c, _bind="gemm")


def _transpose_b(op, a, b, c=None):
    return op.Gemm(a, op.Transpose(b, _bind="t"), c, _bind="gemm")


def _matmul_add(op, a, b, c):
    return op.Add(op.MatMul(a, b), c, _commute=True)


RULES = RewriteRuleSet(
    [
        RewriteRule("matmul_add_to_gemm", _matmul_add, _matmul_add_to_gemm, _matmul_add_check),
        RewriteRule("transpose_into_gemm_a", _transpose_a, _toggle("transA"), _transpose_check),
        RewriteRule("transpose_into_gemm_b", _transpose_b, _toggle("transB"), _transpose_check),
    ]
)
