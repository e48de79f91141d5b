"""Attention fusion (opset >= 23): scaled dot-product attention written out becomes one Attention node.

``attention`` matches, on 4-D ``[batch, heads, sequence, head_dim]`` tensors, the forms torch's
exporters write for transformers' SDPA attention and the hand-written ones::

    scores = MatMul(Q, Transpose(K')) / c            (or * c, or no scale at all)
    scores = MatMul(Q * a, Transpose(K') * b)         (TorchScript and dynamo: sqrt(scale) on both sides)
    probs = Softmax(scores [+ mask], axis=-1)
    probs = Where(IsNaN(probs), 0, probs)             (optional: transformers' fully-masked-row guard)
    y = MatMul(probs, V)

and writes ``Attention(Q, K, V, mask, scale=...)``. ``K'`` is whatever the Transpose reads: the
permutation that gives ``K`` itself is inserted when it is not the identity (a head split whose
Transposes were composed). A second form, rooted at an Attention node (a fused one or the model's
own), drops grouped-query attention's ``repeat_kv``, ``Reshape(Expand(Unsqueeze(kv, 2), [b, kv_heads,
n_rep, s, d]), [b, heads, s, d])``, from K and V once the shapes prove it: Attention pairs query head
``i`` with key/value head ``i // n_rep`` itself, as ``repeat_kv`` does.

K^T may also come from another op (torchvision's ViT, dynamo: ``Reshape(Transpose(k, [1, 2, 0]))``): it
is transposed back by ``[0, 1, 3, 2]``.

The additive mask, causal (``[seq, seq]``) or padding (``[batch, 1, 1, seq]``), becomes
``attn_mask``; onnxruntime wants the mask's rows to match the query's, so a mask that broadcasts over
them is expanded to ``[..., q_seq, kv_seq]`` first. A row whose mask entries are all ``-inf`` or all
float32's lowest value comes out of onnxruntime's Attention as zeros, so the fill value of an
exporter's ``Where(keep, 0, fill)`` mask decides exactness:

- ``-inf`` (TorchScript): the written-out graph makes such a row NaN, which the IsNaN guard turns
  into zeros; fused only with the guard (without it the graph's NaN would become 0).
- float32's lowest (dynamo): the graph gives the row the mean of V (every score rounds to the same
  value); the fused mask fills with ``-1e38`` instead, which keeps partially masked rows identical
  (``exp`` underflows to 0 either way) and fully masked ones the mean of V, as onnxruntime does not
  zero them.

Float32 only; the model's opset and the installed onnxruntime must have Attention.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto

from onnxgraph.node import Node
from onnxgraph.optimizers.fusions.common import attributes_of, float_constant
from onnxgraph.optimizers.fusions.ort_support import standard_op_available
from onnxgraph.optimizers.rewriter.rule import Failure, RewriteContext, RewriteRule, RewriteRuleSet, fail
from onnxgraph.optimizers.rewriter.values import axes_arg, const_ints, transpose_perm
from onnxgraph.value import Value

SCALES = ("div", "mul", "both", "none")
"""Where the scale sits: ``scores / c``, ``scores * c``, ``(Q * a) @ (K^T * b)``, or nowhere (1)."""

LOWEST = float(np.finfo(np.float32).min)
SAFE_FILL = -1e38
"""A fill that masks like float32's lowest value but that onnxruntime's Attention does not treat as
"the whole row is masked" (see the module docstring)."""


def _pattern(scale: str, masked: bool, guarded: bool, transposed: bool):
    def pattern(op, q, k_source, v, c, c_q, c_k, mask):
        k_t = op.Transpose(k_source, _bind="k_transpose") if transposed else k_source
        if scale == "both":
            scores = op.MatMul(op.Mul(q, c_q, _commute=True), op.Mul(k_t, c_k, _commute=True))
        else:
            scores = op.MatMul(q, k_t)
            if scale == "div":
                scores = op.Div(scores, c)
            elif scale == "mul":
                scores = op.Mul(scores, c, _commute=True)
        if masked:
            scores = op.Add(scores, mask, _commute=True)
        probs = op.Softmax(scores, _bind="softmax")
        if guarded:
            probs = op.Where(op.IsNaN(probs), 0.0, probs)
        return op.MatMul(probs, v)

    return pattern


def _scalar(value: Value | None) -> float | None:
    """A non-zero constant scalar's value, or None."""
    data = float_constant(value)
    if data is None or data.size != 1 or float(data.reshape(-1)[0]) == 0.0:
        return None
    return float(data.reshape(-1)[0])


def _scale(form: str, c: Value | None, c_q: Value | None, c_k: Value | None) -> float | None:
    """The softmax scale of the matched form, or None when a factor is not a non-zero constant scalar."""
    if form == "none":
        return 1.0
    if form == "both":
        a, b = _scalar(c_q), _scalar(c_k)
        return None if a is None or b is None else a * b
    value = _scalar(c)
    if value is None:
        return None
    return 1.0 / value if form == "div" else value


def unrepeated_kv(value: Value) -> Value | None:
    """``kv`` when ``value`` is ``repeat_kv(kv)`` as exported, or None.

    ``repeat_kv`` is ``Reshape(Expand(Unsqueeze(kv, [2]), [b, kv_heads, n_rep, s, d]), [b, kv_heads *
    n_rep, s, d])`` on a 4-D ``kv``; the Expand must broadcast the new axis only, and the Reshape must
    only merge the heads and repeats, both read from the inferred shapes (or the Reshape's target).
    """
    reshape = value.producer()
    if reshape is None or reshape.op_type != "Reshape":
        return None
    expand = reshape.inputs[0].producer() if reshape.inputs[0] is not None else None
    if expand is None or expand.op_type != "Expand":
        return None
    unsqueeze = expand.inputs[0].producer() if expand.inputs[0] is not None else None
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or axes_arg(unsqueeze) not in ([2], [-3]):
        return None
    kv = unsqueeze.input(0)
    kv_shape, expanded, merged = kv.shape, expand.outputs[0].shape, value.shape
    if (
        kv_shape is None
        or expanded is None
        or merged is None
        or (len(kv_shape), len(expanded), len(merged)) != (4, 5, 4)
    ):
        return None
    heads, repeats, head_dim = kv_shape[1], expanded[2], kv_shape[3]
    if not all(isinstance(d, int) for d in (heads, repeats, head_dim)):
        return None
    if list(expanded[1:2]) + list(expanded[4:]) != [heads, head_dim] or merged[1] != heads * repeats:  # type: ignore[operator]
        return None
    if merged[3] != head_dim:
        return None
    # batch and sequence kept: the Expand leaves them as they are, and the Reshape keeps them (the
    # same symbols or sizes, or a target that copies the batch and infers the sequence)
    if not all(e is not None and e == k for e, k in ((expanded[0], kv_shape[0]), (expanded[3], kv_shape[2]))):
        return None
    target = const_ints(reshape.inputs[1])
    copies = target is not None and len(target) == 4 and target[0] == 0 and target[2] == -1
    return kv if copies or (merged[0] == kv_shape[0] and merged[2] == kv_shape[2]) else None


def _mask_fill(mask: Value) -> float | None:
    """The fill of an exporter's ``Where(keep, 0, fill)`` mask, or None for a mask of another kind."""
    where = mask.producer()
    if where is None or where.op_type != "Where":
        return None
    zero, fill = float_constant(where.inputs[1]), float_constant(where.inputs[2])
    if zero is None or fill is None or fill.size != 1 or np.any(zero != 0):
        return None
    return float(fill.reshape(-1)[0])


def _check_mask(mask: Value, guarded: bool) -> dict[str, Any] | Failure:
    """Whether the fused mask masks exactly as the graph does (see the module docstring)."""
    if mask.elem_type != TensorProto.FLOAT or mask.shape is None or len(mask.shape) > 4:
        return fail("the mask is not a float32 tensor of rank 4 or less")
    fill = _mask_fill(mask)
    if fill == -np.inf and not guarded:
        return fail("a -inf mask without the IsNaN guard: the graph gives NaN where Attention gives 0")
    return {"refill": fill == LOWEST}


def _scales_later(q: Value | None, k_t: Value | None) -> bool:
    """Whether an unscaled form's Q, or an untransposed form's K^T, comes from an op that another form
    absorbs (a scale whose constant other passes have yet to fold, a Transpose): firing now would keep
    it outside the Attention."""
    q_op, k_op = (v.producer() if v is not None else None for v in (q, k_t))
    return (q_op is not None and q_op.op_type in ("Mul", "Div")) or (
        k_op is not None and k_op.op_type in ("Mul", "Div", "Transpose")
    )


def _check(scale: str, guarded: bool):
    def check(
        ctx: RewriteContext,
        q: Value,
        k_source: Value,
        v: Value,
        softmax: Node,
        k_transpose: Node | None = None,
        c: Value | None = None,
        c_q: Value | None = None,
        c_k: Value | None = None,
        mask: Value | None = None,
        **_: Any,
    ) -> dict[str, Any] | Failure:
        shapes = [value.shape for value in (q, v)]
        if any(shape is None or len(shape) != 4 for shape in shapes):
            return fail("Q and V are not known to be 4-D")
        if any(value.elem_type != TensorProto.FLOAT for value in (q, v)):
            return fail("only float32 is fused")
        if softmax.attr("axis", -1) not in (-1, 3):
            return fail("Softmax is not over the last axis")
        if _scales_later(q if scale == "none" else None, k_source if k_transpose is None else None):
            return fail("a Mul/Div/Transpose feeds Q or K^T: wait for the form that absorbs it")
        if k_transpose is None:  # K^T from elsewhere (a Reshape): transposed back, then transpose_pair composes
            perm = [0, 1, 2, 3] if k_source.shape is not None and len(k_source.shape) == 4 else None
        else:
            perm = transpose_perm(k_transpose)
        if perm is None or len(perm) != 4:
            return fail("K^T is not known to be 4-D")
        value = _scale(scale, c, c_q, c_k)
        if value is None:
            return fail("the scale is not a non-zero constant scalar")
        masking = _check_mask(mask, guarded) if mask is not None else {"refill": False}
        if isinstance(masking, Failure):
            return masking
        unavailable = standard_op_available(ctx, "Attention")
        if unavailable is not None:
            return unavailable
        k_perm = [perm[0], perm[1], perm[3], perm[2]]
        rows_match = mask is None or (
            len(mask.shape or ()) >= 2 and mask.shape[-2] == q.shape[2] and mask.shape[-2] is not None  # type: ignore[index]
        )
        return {
            "scale": value,
            "k_perm": k_perm,
            "expand_mask": not rows_match,
            **masking,
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
    refill: bool,
    mask: Value | None = None,
    **_: Any,
) -> Value:
    k = k_source if k_perm == [0, 1, 2, 3] else op.Transpose(k_source, perm=k_perm)
    if mask is not None and refill:
        where = mask.producer()
        assert where is not None
        mask = op.Where(where.inputs[0], where.inputs[1], op.const(np.array(SAFE_FILL, np.float32)))
    if mask is not None and expand_mask:
        rows = op.Shape(q, start=2, end=3)
        mask = op.Expand(mask, op.Concat(rows, op.const(np.array([1], np.int64)), axis=0))
    return op.Attention(q, k, v, mask, scale=scale)


def _gqa_pattern(op, q, k, v, mask=None):
    return op.Attention(q, k, v, mask, _bind="attention")


def _gqa_check(ctx: RewriteContext, k: Value, v: Value, attention: Node, **_: Any) -> dict[str, Any] | Failure:
    if len(attention.inputs) > 4:
        return fail("the Attention has a KV cache or sequence lengths")
    k_kv, v_kv = unrepeated_kv(k), unrepeated_kv(v)
    if k_kv is None or v_kv is None:
        return fail("K and V are not both repeat_kv of 4-D key/value heads")
    if k_kv.shape[1] != v_kv.shape[1]:  # type: ignore[index]
        return fail("K and V have different numbers of heads")
    return {"k_kv": k_kv, "v_kv": v_kv}


def _gqa_replacement(op, q: Value, k_kv: Value, v_kv: Value, attention: Node, mask: Value | None = None, **_: Any):
    return op.Attention(q, k_kv, v_kv, mask, **attributes_of(attention))


RULES = RewriteRuleSet(
    [
        RewriteRule("attention", _pattern(scale, masked, guarded, transposed), _replacement, _check(scale, guarded))
        for transposed in (True, False)
        for guarded in (True, False)
        for masked in (True, False)
        for scale in SCALES
    ]
    + [RewriteRule("attention", _gqa_pattern, _gqa_replacement, _gqa_check)]
)
