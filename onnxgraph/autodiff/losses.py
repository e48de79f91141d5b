"""Losses that ``build_gradient(loss_fn=...)`` appends on a model output, written with the op builder."""

from __future__ import annotations

import onnx

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.value import Value

LOSS_FUNCTIONS = ("mse", "l1", "cross_entropy", "bce_with_logits", "sum")
"""Kinds accepted by ``loss_fn`` and ``onnxgraph grad --loss-fn``."""


def target_type(kind: str, output: Value) -> onnx.TypeProto | None:
    """The type of the ``target`` input a loss needs (None: no target)."""
    if kind == "sum":
        return None
    if kind == "cross_entropy":
        shape = output.shape
        labels = None if shape is None else (shape[0], *shape[2:])
        return types.tensor_type(onnx.TensorProto.INT64, labels)
    return output.type


def build_loss(b: GradBuilder, kind: str, output: Value, target: Value | None) -> Value:
    """Append ``kind``'s mean (or sum) loss of ``output`` against ``target``; return the scalar loss.

    mse: mean((y - t)^2); l1: mean|y - t|; cross_entropy: SoftmaxCrossEntropyLoss of logits
    (N, C, ...) and int64 class indices, mean; bce_with_logits: mean(softplus(y) - y * t);
    sum: the sum of the output's elements.
    """
    if kind == "sum":
        return b.reduce("ReduceSum", output, None, keepdims=False)
    if kind == "cross_entropy":
        return b.SoftmaxCrossEntropyLoss(output, target, reduction="mean")
    if kind == "mse":
        diff = b.Sub(output, target)
        per_element = b.Mul(diff, diff)
    elif kind == "l1":
        per_element = b.Abs(b.Sub(output, target))
    else:
        per_element = b.Sub(b.Softplus(output), b.Mul(output, target))
    return b.reduce("ReduceMean", per_element, None, keepdims=False)
