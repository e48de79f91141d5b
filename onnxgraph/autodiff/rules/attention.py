"""Gradient rules of the opset-23 transformer ops: Attention and RotaryEmbedding.

Attention's backward pass recomputes the attention probabilities from Q and K with standard ops (one
MatMul and a Softmax, as FlashAttention's backward does) instead of asking the forward node for them:
the forward node stays a fused kernel that need not materialize them, and the softcap derivative
needs the raw scores anyway. Grouped-query attention (fewer K/V heads than Q heads) is handled by
viewing Q ``(B, Hq, S, D)`` as ``(B, Hkv, r*S, D)``: the query heads of one group are contiguous
(``np.repeat`` order), so plain 4-D MatMuls both broadcast K/V and sum their gradients over a group.

RotaryEmbedding rotates pairs of features by position-dependent angles; its transpose rotates them
back, so the input's gradient is one RotaryEmbedding of the upstream gradient with ``-sin``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from onnxgraph.autodiff.builder import GradBuilder, rank_of, upstream
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value

_SWAP_LAST = [0, 1, 3, 2]
_HEADS_FIRST = [0, 2, 1, 3]


def _label(node) -> str:
    return f"{node.op_type} (node '{node.name or '<unnamed>'}')"


@register("Attention", differentiable=(0, 1, 2, 3, 4, 5))
def attention(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    q, k, v = node.input(0), node.input(1), node.input(2)
    mask, past_k, past_v, lengths = (list(node.inputs[3:7]) + [None] * 4)[:4]
    if (past_k is None) != (past_v is None):
        raise GradientError(f"{_label(node)} needs both past_key and past_value or neither")
    g_y, g_present_k, g_present_v, g_qk = (list(grads) + [None] * 3)[:4]
    three_d = rank_of(q) == 3
    hq, hkv = _head_counts(node, q, k, three_d)
    q4, k4, v4 = (_split_heads(b, t, h) for t, h in ((q, hq), (k, hkv), (v, hkv))) if three_d else (q, k, v)
    k_all = b.Concat(past_k, k4, axis=2) if past_k is not None else k4
    v_all = b.Concat(past_v, v4, axis=2) if past_v is not None else v4
    grouped = hq // hkv > 1

    def group(t):  # (B, Hq, S, X) -> (B, Hkv, r*S, X)
        return b.Reshape(t, b.ints([0, hkv, -1, 0])) if grouped and t is not None else t

    def ungroup(t):  # (B, Hkv, r*S, X) -> (B, Hq, S, X)
        return b.Reshape(t, b.ints([0, hq, -1, 0])) if grouped else t

    scale = _scale(b, node, q4)
    qg = group(q4)
    raw = b.Mul(b.MatMul(qg, b.Transpose(k_all, perm=_SWAP_LAST)), scale)
    softcap = float(node.attr("softcap", 0.0) or 0.0)
    capped_tanh = b.Tanh(b.Div(raw, b.scalar(softcap, q))) if softcap > 0 else None
    scores = ungroup(b.Mul(capped_tanh, b.scalar(softcap, q)) if capped_tanh is not None else raw)
    bias, may_block_rows, padded_mask = _bias(b, node, q4, k_all, mask, past_k, lengths)
    probs = b.Softmax(b.Add(scores, bias) if bias is not None else scores, axis=-1)
    if may_block_rows:  # a fully masked row attends nothing: zeros, as the op defines it
        dead = b.IsInf(b.reduce("ReduceMax", bias, [-1]), detect_positive=0)
        probs = b.Where(dead, b.scalar(0, q), probs)
    pg = group(probs)

    # qk_matmul_output (output 3) is, by qk_matmul_output_mode: 0 or 1 the (softcapped) scores,
    # 2 the scores plus the bias, 3 the probabilities (as onnx.reference computes it)
    mode = node.attr("qk_matmul_output_mode", 0) or 0
    g_qk = group(g_qk)
    d_k_all, d_v_all = g_present_k, g_present_v
    d_probs = g_qk if mode == 3 else None
    if g_y is not None:
        dyg = group(_split_heads(b, g_y, hq) if three_d else g_y)
        if b.wants(v) or b.wants(past_v):
            d_v_all = b.add_all([d_v_all, b.MatMul(b.Transpose(pg, perm=_SWAP_LAST), dyg)])
        d_probs = b.add_all([d_probs, b.MatMul(dyg, b.Transpose(v_all, perm=_SWAP_LAST))])
    d_logits = None
    if d_probs is not None:
        d_logits = b.Mul(pg, b.Sub(d_probs, b.reduce("ReduceSum", b.Mul(d_probs, pg), [-1])))
    d_logits = b.add_all([d_logits, g_qk if mode == 2 else None])
    d_mask = None
    if d_logits is not None and b.wants(mask):
        if _same_length(mask, k_all):
            d_mask = b.unbroadcast(ungroup(d_logits), mask, _logits_shape(q4, k_all))
        else:  # un-broadcast to the padded mask, then drop the padding
            d_mask = b.unbroadcast(ungroup(d_logits), b.typed(padded_mask, mask), None)
            d_mask = b.Slice(d_mask, b.ints([0]), b.axis_size(mask, -1), b.ints([-1]))
    d_raw = b.add_all([d_logits, g_qk if mode in (0, 1) else None])
    d_q = None
    if d_raw is not None:
        if capped_tanh is not None:
            d_raw = b.Mul(d_raw, b.Sub(b.scalar(1, q), b.Mul(capped_tanh, capped_tanh)))
        d_raw = b.Mul(d_raw, scale)
        if b.wants(q):
            d_q = ungroup(b.MatMul(d_raw, k_all))
            d_q = _merge_heads(b, d_q) if three_d else d_q
        if b.wants(k) or b.wants(past_k):
            d_k_all = b.add_all([d_k_all, b.MatMul(b.Transpose(d_raw, perm=_SWAP_LAST), qg)])
    d_past_k, d_k = _split_past(b, d_k_all, past_k, three_d)
    d_past_v, d_v = _split_past(b, d_v_all, past_v, three_d)
    return [d_q, d_k, d_v, d_mask, d_past_k, d_past_v]


def _head_counts(node, q, k, three_d: bool) -> tuple[int, int]:
    """(query heads, key/value heads): attributes in the 3-D form, static dims in the 4-D one."""
    if three_d:
        hq, hkv = node.attr("q_num_heads"), node.attr("kv_num_heads")
        if not hq or not hkv:
            raise GradientError(f"{_label(node)} with 3-D inputs needs q_num_heads and kv_num_heads")
        return hq, hkv
    hq, hkv = q.shape[1], k.shape[1] if k.shape is not None and len(k.shape) == 4 else None
    if hq == hkv and hq is not None:
        return 1, 1  # same head count (an int or the same symbol): no grouping
    if not (isinstance(hq, int) and isinstance(hkv, int)):
        raise GradientError(f"the gradient of {_label(node)} needs static head counts when Q and K may differ in them")
    if hq % hkv:
        raise GradientError(f"{_label(node)}: {hq} query heads are not a multiple of {hkv} key heads")
    return hq, hkv


def _split_heads(b, t, heads: int):
    """(B, S, H*D) -> (B, H, S, D)."""
    return b.Transpose(b.Reshape(t, b.ints([0, 0, heads, -1])), perm=_HEADS_FIRST)


def _merge_heads(b, t):
    """(B, H, S, D) -> (B, S, H*D)."""
    return b.Reshape(b.Transpose(t, perm=_HEADS_FIRST), b.ints([0, 0, -1]))


def _scale(b, node, q4):
    """The attribute ``scale``, else 1/sqrt(head size) (a run-time value when the size is unknown)."""
    scale = node.attr("scale")
    if scale is not None:
        return b.scalar(scale, q4)
    head = q4.shape[3] if q4.shape is not None and len(q4.shape) == 4 else None
    if isinstance(head, int):
        return b.scalar(1 / np.sqrt(head), q4)
    size = b.Cast(b.axis_size(q4, 3, scalar=True), to=q4.elem_type)
    return b.Reciprocal(b.Sqrt(size))


def _bias(b, node, q4, k_all, mask, past_k, lengths):
    """The additive bias of the scores: the mask (a boolean one as 0 / -inf), the causal mask, the
    sliding window (opset 25) and the padding of ``nonpad_kv_seqlen`` (opset 24); and whether it may
    block whole rows."""
    neg_inf = b.scalar(-np.inf, q4)
    terms, padded = [], None
    if mask is not None:
        as_bias = b.Where(mask, b.scalar(0, q4), neg_inf) if mask.elem_type == onnx.TensorProto.BOOL else mask
        padded = _pad_to_keys(b, as_bias, mask, k_all)
        terms.append(padded)
    left, right = node.attr("left_window_size", -1), node.attr("right_window_size", -1)
    left, right = -1 if left is None else left, -1 if right is None else right
    if node.attr("is_causal", 0) or left >= 0 or right >= 0:
        zero, one = b.const(np.int64(0)), b.const(np.int64(1))
        rows = b.Range(zero, b.axis_size(q4, 2, scalar=True), one)
        rows = b.Unsqueeze(rows, b.ints([1]))  # (Sq, 1)
        if past_k is not None:  # bottom-right aligned: query i sits at position i + past length
            rows = b.Add(rows, b.axis_size(past_k, 2, scalar=True))
        elif lengths is not None:  # per batch: i + valid keys - Sq, as (B, 1, Sq, 1)
            offset = b.Sub(b.Cast(lengths, to=onnx.TensorProto.INT64), b.axis_size(q4, 2, scalar=True))
            rows = b.Add(rows, b.Reshape(offset, b.ints([-1, 1, 1, 1])))
        cols = b.Range(zero, b.axis_size(k_all, 2, scalar=True), one)
        allowed = []
        if node.attr("is_causal", 0):
            allowed.append(b.LessOrEqual(cols, rows))
        if left >= 0:  # key j >= position - left
            allowed.append(b.GreaterOrEqual(cols, b.Sub(rows, b.const(np.int64(left)))))
        if right >= 0:  # key j <= position + right
            allowed.append(b.LessOrEqual(cols, b.Add(rows, b.const(np.int64(right)))))
        for each in allowed:
            terms.append(b.Where(each, b.scalar(0, q4), neg_inf))
    if lengths is not None:  # keys at or past a batch's valid length are padding
        cols = b.Range(b.const(np.int64(0)), b.axis_size(k_all, 2, scalar=True), b.const(np.int64(1)))
        valid = b.Less(cols, b.Reshape(b.Cast(lengths, to=onnx.TensorProto.INT64), b.ints([-1, 1, 1, 1])))
        terms.append(b.Where(valid, b.scalar(0, q4), neg_inf))
    bias = None
    for term in terms:
        bias = term if bias is None else b.Add(bias, term)
    return bias, mask is not None or lengths is not None or left >= 0 or right >= 0, padded


def _same_length(mask, k_all) -> bool:
    """True when the mask's last dim is statically 1 or the key sequence's length."""
    last = mask.shape[-1] if mask.shape else None
    keys = k_all.shape[2] if k_all.shape is not None and len(k_all.shape) == 4 else None
    return last == 1 or (last is not None and last == keys)


def _pad_to_keys(b, bias, mask, k_all):
    """A mask shorter than the key sequence is padded with -inf (False) up to it, as the op does."""
    if _same_length(mask, k_all):
        return bias
    missing = b.Sub(b.axis_size(k_all, 2), b.axis_size(mask, -1))
    rank = rank_of(mask)
    pads = b.Concat(b.ints([0] * (2 * rank - 1)), missing, axis=0)
    return b.Pad(bias, pads, b.scalar(-np.inf, k_all))


def _logits_shape(q4, k_all):
    """The static (B, Hq, Sq, T) shape of the scores where known (for un-broadcasting the mask)."""
    if q4.shape is None or k_all.shape is None or len(q4.shape) != 4 or len(k_all.shape) != 4:
        return None
    return (q4.shape[0], q4.shape[1], q4.shape[2], k_all.shape[2])


def _split_past(b, d_all, past, three_d: bool):
    """Split the gradient of Concat(past, new) on the sequence axis; the new part back to 3-D."""
    if d_all is None:
        return None, None
    if past is None:
        return None, _merge_heads(b, d_all) if three_d else d_all
    length = b.axis_size(past, 2)
    d_past = b.Slice(d_all, b.ints([0]), length, b.ints([2]))
    d_new = b.Slice(d_all, length, b.ints([np.iinfo(np.int64).max]), b.ints([2]))
    return d_past, _merge_heads(b, d_new) if three_d else d_new


@register("RotaryEmbedding", differentiable=(0, 1, 2))
def rotary_embedding(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    x, cos, sin = node.inputs[:3]
    positions = node.inputs[3] if len(node.inputs) > 3 else None
    g = upstream(grads)
    attrs = {
        name: node.attr(name)
        for name in ("interleaved", "rotary_embedding_dim", "num_heads")
        if node.attr(name) is not None
    }
    d_x = None
    if b.wants(x):  # the transpose of a rotation by theta is the rotation by -theta
        d_x = b.RotaryEmbedding(g, cos, b.Neg(sin), *([positions] if positions is not None else []), **attrs)
    d_cos = d_sin = None
    if b.wants(cos) or b.wants(sin):
        d_cos, d_sin = _cache_grads(b, node, x, g, cos, positions)
    return [d_x, d_cos, d_sin]


def _cache_grads(b, node, x, g, cos, positions):
    """Gradients of the cos and sin caches: with ``y1 = c*x1 - s*x2`` and ``y2 = s*x1 + c*x2``,
    ``dc = g1*x1 + g2*x2`` and ``ds = g2*x1 - g1*x2``, summed over heads, then scattered back to
    the cache rows ``position_ids`` picked."""
    rank = rank_of(x)  # the upstream gradient has x's shape
    x1, x2 = _rotated_halves(b, node, x, rank)
    g1, g2 = _rotated_halves(b, node, g, rank)
    d_cos = b.reduce("ReduceSum", b.Add(b.Mul(g1, x1), b.Mul(g2, x2)), [2], keepdims=False)
    d_sin = b.reduce("ReduceSum", b.Sub(b.Mul(g2, x1), b.Mul(g1, x2)), [2], keepdims=False)
    if positions is None:  # caches (B, S, rotary_dim/2), possibly broadcast over the batch
        batch = x.shape[0] if x.shape else None
        if cos.shape is None or cos.shape[0] != batch or batch is None:
            d_cos, d_sin = b.unbroadcast(d_cos, cos, None), b.unbroadcast(d_sin, cos, None)
        return d_cos, d_sin
    index = b.Unsqueeze(positions, b.ints([-1]))
    zeros = b.zeros_like(cos)
    return tuple(b.ScatterND(zeros, index, d, reduction="add") for d in (d_cos, d_sin))


def _rotated_halves(b, node, t, rank: int):
    """The two rotated halves (x1, x2) of ``t`` (of rank ``rank``) in the op's (B, S, H, rotary_dim/2)
    layout."""
    if rank == 4:
        t = b.Transpose(t, perm=_HEADS_FIRST)
    else:
        heads = node.attr("num_heads")
        if not heads:
            raise GradientError(f"{_label(node)} with a 3-D input needs num_heads")
        t = b.Reshape(t, b.ints([0, 0, heads, -1]))
    dim = node.attr("rotary_embedding_dim", 0) or 0
    if dim:
        t = b.Slice(t, b.ints([0]), b.ints([dim]), b.ints([3]))
    if node.attr("interleaved", 0):
        pairs = b.Reshape(t, b.ints([0, 0, 0, -1, 2]))
        first, second = (b.Gather(pairs, b.const(np.int64(i)), axis=4) for i in (0, 1))
        return first, second
    first, second = b.Split(t, axis=3, num_outputs=2, _outputs=2)
    return first, second
