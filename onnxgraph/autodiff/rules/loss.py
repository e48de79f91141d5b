"""Gradient rules of Softmax, LogSoftmax and the loss ops (SoftmaxCrossEntropyLoss, NLL)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxgraph.autodiff.builder import GradBuilder, rank_of
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value


@register("Softmax")
def softmax(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y, g = node.outputs[0], grads[0]
    axis = node.attr("axis", -1)
    gy = b.Mul(g, y)
    return [b.Sub(gy, b.Mul(y, b.ReduceSum(gy, b.ints([axis]), keepdims=1)))]


@register("LogSoftmax")
def log_softmax(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    y, g = node.outputs[0], grads[0]
    axis = node.attr("axis", -1)
    return [b.Sub(g, b.Mul(b.Exp(y), b.ReduceSum(g, b.ints([axis]), keepdims=1)))]


def _labels(b, node, like):
    """(labels safe to index with, 0/1 validity mask or None) under ``ignore_index``."""
    labels, ignore = node.inputs[1], node.attr("ignore_index")
    if ignore is None:
        return labels, None
    ignored = b.Equal(labels, b.Cast(b.const(np.int64(ignore)), to=labels.elem_type))
    safe = b.Where(ignored, b.Cast(b.const(np.int64(0)), to=labels.elem_type), labels)
    return safe, b.Cast(b.Not(ignored), to=like.elem_type)


def _one_hot(b, safe, like):
    depth = b.axis_size(like, 1, scalar=True)
    return b.one_hot(safe, depth, like, axis=1)


def _weights(node):
    return node.inputs[2] if len(node.inputs) > 2 else None


def nll_input_grad(b, node, g, log_probs_like):
    """d loss / d log-probabilities of NegativeLogLikelihoodLoss (shared with SoftmaxCrossEntropy).

    Args:
        b: the builder.
        node: the loss node (inputs: scores or log-probabilities, labels, optional class weights).
        g: upstream gradient of the loss output.
        log_probs_like: a value shaped like the (N, C, d1...) input, for its class count and type.
    """
    weights, reduction = _weights(node), node.attr("reduction", "mean")
    safe, valid = _labels(b, node, log_probs_like)
    per_sample = b.Gather(weights, safe) if weights is not None else None
    if valid is not None:
        per_sample = b.Mul(per_sample, valid) if per_sample is not None else valid
    coef = g
    if reduction == "mean":
        denom = (
            b.ReduceSum(per_sample, keepdims=0) if per_sample is not None else b.count(node.inputs[1], log_probs_like)
        )
        coef = b.Div(coef, denom)
    if per_sample is not None:
        coef = b.Mul(coef, per_sample)
    if reduction == "none" or per_sample is not None:
        coef = b.Unsqueeze(coef, b.ints([1]))
    return b.Neg(b.Mul(_one_hot(b, safe, log_probs_like), coef))


def class_weight_grad(b, node, g, log_probs):
    """d loss / d class weights: each sample's -log p of its label, summed per class (for a mean,
    minus the loss, over the total weight: d(sum w l / sum w) = (l - L) / sum w)."""
    weights, reduction = _weights(node), node.attr("reduction", "mean")
    safe, valid = _labels(b, node, log_probs)
    picked = b.Neg(b.Squeeze(b.GatherElements(log_probs, b.Unsqueeze(safe, b.ints([1])), axis=1), b.ints([1])))
    if reduction == "mean":
        picked = b.Sub(picked, node.outputs[0])
        per_sample = b.Gather(weights, safe)
        total = b.ReduceSum(b.Mul(per_sample, valid) if valid is not None else per_sample, keepdims=0)
        g = b.Div(g, total)
    if valid is not None:
        picked = b.Mul(picked, valid)
    contribution = b.Unsqueeze(b.Mul(picked, g), b.ints([1]))
    scores = node.input(0)  # shaped like the log-probabilities, with its shape known
    per_class = b.Mul(_one_hot(b, safe, scores), contribution)
    axes = [0, *range(2, rank_of(scores))]
    return b.ReduceSum(per_class, b.ints(axes), keepdims=0)


@register("NegativeLogLikelihoodLoss", differentiable=(0, 2), outputs=(0,))
def nll_loss(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    log_probs, g = node.input(0), grads[0]
    d_weights = class_weight_grad(b, node, g, log_probs) if b.wants(_weights(node)) else None
    d_input = nll_input_grad(b, node, g, log_probs) if b.wants(log_probs) else None
    return [d_input, None, d_weights]


@register("SoftmaxCrossEntropyLoss", differentiable=(0, 2))
def softmax_cross_entropy(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    scores = node.input(0)
    log_probs = b.ensure_output(node, 1, scores.elem_type)
    d_weights = None
    if grads[0] is not None and b.wants(_weights(node)):
        d_weights = class_weight_grad(b, node, grads[0], log_probs)
    if not b.wants(scores):
        return [None, None, d_weights]
    d_log_probs = b.add_all(
        [
            nll_input_grad(b, node, grads[0], scores) if grads[0] is not None else None,
            grads[1] if len(grads) > 1 else None,
        ]
    )
    total = b.ReduceSum(d_log_probs, b.ints([1]), keepdims=1)
    return [b.Sub(d_log_probs, b.Mul(b.Exp(log_probs), total)), None, d_weights]
