"""Gradient rules of Softmax, LogSoftmax and the loss ops (SoftmaxCrossEntropyLoss, NLL)."""

from __future__ import annotations

import numpy as np

from onnxgraph.autodiff.builder import dtype_of
from onnxgraph.autodiff.registry import register


@register("Softmax")
def softmax(b, node, grads):
    y, g = node.outputs[0], grads[0]
    axis = node.attr("axis", -1)
    gy = b.Mul(g, y)
    return [b.Sub(gy, b.Mul(y, b.ReduceSum(gy, b.ints([axis]), keepdims=1)))]


@register("LogSoftmax")
def log_softmax(b, node, grads):
    y, g = node.outputs[0], grads[0]
    axis = node.attr("axis", -1)
    return [b.Sub(g, b.Mul(b.Exp(y), b.ReduceSum(g, b.ints([axis]), keepdims=1)))]


def nll_input_grad(b, node, g, log_probs_like):
    """d loss / d log-probabilities of NegativeLogLikelihoodLoss (shared with SoftmaxCrossEntropy).

    Args:
        b: the builder.
        node: the loss node (inputs: scores or log-probabilities, labels, optional class weights).
        g: upstream gradient of the loss output.
        log_probs_like: a value shaped like the (N, C, d1...) input, for its class count and type.
    """
    labels = node.inputs[1]
    weights = node.inputs[2] if len(node.inputs) > 2 else None
    reduction, ignore = node.attr("reduction", "mean"), node.attr("ignore_index")
    safe = labels
    valid = None
    if ignore is not None:
        ignored = b.Equal(labels, b.Cast(b.const(np.int64(ignore)), to=labels.elem_type))
        safe = b.Where(ignored, b.Cast(b.const(np.int64(0)), to=labels.elem_type), labels)
        valid = b.Cast(b.Not(ignored), to=log_probs_like.elem_type)
    per_sample = b.Gather(weights, safe) if weights is not None else None
    if valid is not None:
        per_sample = b.Mul(per_sample, valid) if per_sample is not None else valid
    coef = g
    if reduction == "mean":
        denom = (
            b.ReduceSum(per_sample, keepdims=0)
            if per_sample is not None
            else b.count(labels, log_probs_like)
        )
        coef = b.Div(coef, denom)
    if per_sample is not None:
        coef = b.Mul(coef, per_sample)
    if reduction == "none" or per_sample is not None:
        coef = b.Unsqueeze(coef, b.ints([1]))
    depth = b.axis_size(log_probs_like, 1, scalar=True)
    on_off = b.const(np.array([0, 1], dtype=dtype_of(log_probs_like)))
    return b.Neg(b.Mul(b.OneHot(safe, depth, on_off, axis=1), coef))


@register("NegativeLogLikelihoodLoss", differentiable=(0,))
def nll_loss(b, node, grads):
    return [nll_input_grad(b, node, grads[0], node.inputs[0])]


@register("SoftmaxCrossEntropyLoss", differentiable=(0,))
def softmax_cross_entropy(b, node, grads):
    scores = node.inputs[0]
    d_log_probs = b.add_all(
        [
            nll_input_grad(b, node, grads[0], scores) if grads[0] is not None else None,
            grads[1] if len(grads) > 1 else None,
        ]
    )
    log_probs = b.ensure_output(node, 1)
    total = b.ReduceSum(d_log_probs, b.ints([1]), keepdims=1)
    return [b.Sub(d_log_probs, b.Mul(b.Exp(log_probs), total))]
