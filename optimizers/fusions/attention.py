"""Attention fusion (opset >= 23): scaled dot-product attention written out becomes one Attention node.

``attention`` matches, on 4-D ``[batch, heads, sequence, head_dim]`` tensors::

    scores = MatMul(Q, Transpose(K')) / c      (or * c)
    y = MatMul(Softmax(scores [+ mask], axis=-1), V)

and writes ``Attention(Q, K, V, mask, scale=1/c or c)``. ``K'`` is whatever the Transpose reads: the
permutation that gives ``K`` itself is inserted when it is not the identity (a head split whose
Transposes were composed). The additive mask, causal (``[seq, seq]``) or padding (``[batch, 1, 1,
seq]``), becomes ``attn_mask``; onnxruntime wants the mask's rows to match the query's, so a mask
that broadcasts over them is expanded to ``[..., q_seq, kv_seq]`` first. Float32 only; the model's
opset and the installed onnxruntime must have Attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import float_constant
from onnxgraph.optimizers.fusions.ort_support import standard_op_available
from onnxgraph.optimizers.rewriter.rule import Failure, RewriteContext, RewriteRule, RewriteRuleSet, fail
from onnxgraph.optimizers.rewriter.values import transpose_perm
from onnxgraph.value import Value


def _pattern(divide: bool, masked: bool):
    def pattern(op, q, k_source, v, c, mask=None):
        scores = op.MatMul(q, op.Transpose(k_source, _bind="k_transpose"))
        scaled = op.Div(scores, c) if divide else op.Mul(scores, c, _commute=True)
        if masked:
            scaled = op.Add(scaled, mask, _commute=True)
        return op.MatMul(op.Softmax(scaled, _bind="softmax"), v)

    return pattern


def _check(divide: bool):
    def check(
        ctx: RewriteContext,
        q: Value,
        v: Value,
        c: Value,
        k_transpose: Node,
        softmax: Node,
        mask: Value | None = None,
        **_: Any,
    ) -> dict[str, Any] | Failure:
        shapes = [value.shape for value in (q, v)]
        if any(shape is None or len(shape) != 4 for shape in shapes):
            return fail("Q and V are not known to be 4-D")
        if any(value.elem_type != TensorProto.FLOAT for value in (q, v)):
            return fail("only float32 is fused")
        if mask is not None and (mask.elem_type != TensorProto.FLOAT or mask.shape is None or len(mask.shape) > 4):
            return fail("the mask is not a float32 tensor of rank 4 or less")
        if softmax.attr("axis", -1) not in (-1, 3):
            return fail("Softmax is not over the last axis")
        perm = transpose_perm(k_transpose)
        if perm is None or len(perm) != 4:
            return fail("K's Transpose is not 4-D")
        factor = float_constant(c)
        if factor is None or factor.size != 1 or float(factor.reshape(-1)[0]) == 0.0:
            return fail("the scale is not a non-zero constant scalar")
        value = float(factor.reshape(-1)[0])
        unavailable = standard_op_available(ctx, "Attention")
        if unavailable is not None:
            return unavailable
        rows_match = mask is None or (
            len(mask.shape or ()) >= 2 and mask.shape[-2] == q.shape[2] and mask.shape[-2] is not None  # type: ignore[index]
        )
        return {
            "scale": 1.0 / value if divide else value,
            "k_perm": [perm[0], perm[1], perm[3], perm[2]],
            "expand_mask": not rows_match,
        }

    return check


def _replacement(
    op,
    q: Value,
    k_source: Value,
    v: Value,
    scale: float,
    k_perm: list[int],
    expand_mask: bool,
    mask: Value | None = None,
    **_: Any,
) -> Value:
    k = k_source if k_perm == [0, 1, 2, 3] else op.Transpose(k_source, perm=k_perm)
    if mask is not None and expand_mask:
        rows = op.Shape(q, start=2, end=3)
        mask = op.Expand(mask, op.Concat(rows, op.const(np.array([1], np.int64)), axis=0))
    return op.Attention(q, k, v, mask, scale=scale)


RULES = RewriteRuleSet(
    [
        RewriteRule("attention", _pattern(divide, masked), _replacement, _check(divide))
        for masked in (True, False)
        for divide in (True, False)
    ]
)
