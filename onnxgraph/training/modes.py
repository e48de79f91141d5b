"""Switching a model's BatchNormalization and Dropout nodes between training and inference mode.

A model exported in eval mode normalises with its running statistics; training normalises with the
batch statistics and updates the running ones the way PyTorch does:
``running = (1 - m) * running + m * batch`` with PyTorch's momentum ``m`` (ONNX's ``momentum``
attribute is ``1 - m``), the variance taken *unbiased* (ONNX's running variance is the population
one, so it is corrected here).
"""

from __future__ import annotations

from onnxgraph import types
from onnxgraph.attribute import Attribute
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.training.errors import TrainingError
from onnxgraph.value import Value

BN_MIN_OPSET = 14
"""The first opset whose BatchNormalization has a training mode (``training_mode`` attribute)."""


def running_statistics(model: Model) -> list[Node]:
    """BatchNormalization nodes whose running mean and variance are initializers (so trainable state)."""
    found = []
    for node in model.graph.nodes:
        if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx"):
            mean, var = node.inputs[3:5]
            if mean is not None and var is not None and mean.is_initializer() and var.is_initializer():
                found.append(node)
    return found


def to_training_mode(model: Model, opset: int) -> dict[str, Value]:
    """Switch every BatchNormalization with stored running statistics to training mode.

    Returns:
        running-statistic initializer name -> the value holding its updated statistic (PyTorch's
        momentum, unbiased variance), for the caller to expose as an output.
    """
    nodes = running_statistics(model)
    if nodes and opset < BN_MIN_OPSET:
        raise TrainingError(f"training BatchNormalization needs opset {BN_MIN_OPSET} or newer (the model has {opset})")
    updated: dict[str, Value] = {}
    for node in nodes:
        x, _, _, mean, var = node.inputs[:5]
        for stat in (mean, var):
            stat.type = types.tensor_type(stat.const_value.elem_type, tuple(stat.const_value.dims))
        node.attributes["training_mode"] = Attribute.infer("training_mode", 1)
        b = GradBuilder(model.graph, opset)
        new_mean = node.ensure_output(1)
        pop_var = node.ensure_output(2)
        for value, like in ((new_mean, mean), (pop_var, var)):
            value.type = like.type
        keep = node.attr("momentum", 0.9)
        count = b.Cast(b.Div(b.Size(x), b.Size(mean)), to=var.elem_type)
        bessel = b.Div(count, b.Sub(count, b.scalar(1, var)))  # n / (n - 1)
        kept = b.Mul(var, b.scalar(keep, var))
        new_var = b.Add(kept, b.Mul(b.Sub(pop_var, kept), bessel))
        new_var.type = var.type
        updated[mean.name] = new_mean
        updated[var.name] = new_var
    return updated


def to_inference_mode(model: Model) -> None:
    """Make BatchNormalization and Dropout nodes of a training-mode export run in inference mode."""
    graph = model.graph
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx"):
            continue
        if node.op_type == "BatchNormalization" and node.attr("training_mode", 0):
            attributes = {k: a for k, a in node.attributes.items() if k != "training_mode"}
            _replace(node, Node("", node.op_type, node.inputs, attributes.values(), name=node.name))
        elif node.op_type == "Dropout" and len(node.inputs) > 2:
            _replace(node, Node("", "Identity", node.inputs[:1], name=node.name))


def _replace(old: Node, new: Node) -> None:
    """Put ``new`` (one output) in place of ``old``, whose other outputs nobody may read."""
    for value in old.outputs[1:]:
        if value.has_uses() or value.is_graph_output():
            raise TrainingError(f"node '{old.name}' ({old.op_type}): its training-only outputs are read")
    old.graph.insert_before(old, new)
    new.outputs[0].type = old.outputs[0].type
    old.outputs[0].replace_all_uses_with(new.outputs[0], replace_graph_outputs=True)
    old.graph.remove(old)
