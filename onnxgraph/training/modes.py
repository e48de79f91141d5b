"""Switching a model's BatchNormalization and Dropout nodes between training and inference mode.

A model exported in eval mode normalises with its running statistics; training normalises with the
batch statistics and updates the running ones the way PyTorch does:
``running = (1 - m) * running + m * batch`` with PyTorch's momentum ``m`` (ONNX's ``momentum``
attribute is ``1 - m``), the variance taken *unbiased* (ONNX's running variance is the population
one, so it is corrected here).
"""

from __future__ import annotations

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.attribute import Attribute
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.errors import TrainingError
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.tensor import Tensor, initializer_tensor
from onnxgraph.value import Value

BN_MIN_OPSET = 14
"""The first opset whose BatchNormalization has a training mode (``training_mode`` attribute)."""


def running_statistics(model: Model) -> list[tuple[Node, Value, Value]]:
    """``(node, running mean, running variance)`` of the BatchNormalization nodes whose running statistics
    are dense initializers (so trainable state)."""
    found = []
    for node in model.graph.nodes:
        if node.op_type == "BatchNormalization" and node.domain in ("", "ai.onnx") and len(node.inputs) == 5:
            mean, var = node.inputs[3], node.inputs[4]
            if mean is not None and var is not None and _is_dense_initializer(mean) and _is_dense_initializer(var):
                found.append((node, mean, var))
    return found


def _is_dense_initializer(value: Value) -> bool:
    return value.is_initializer() and isinstance(value.const_value, Tensor)


def to_training_mode(model: Model, opset: int) -> dict[str, Value]:
    """Switch every BatchNormalization with stored running statistics to training mode.

    Returns:
        running-statistic initializer name -> the value holding its updated statistic (PyTorch's
        momentum, unbiased variance), for the caller to expose as an output.
    """
    found = running_statistics(model)
    if found and opset < BN_MIN_OPSET:
        raise TrainingError(f"training BatchNormalization needs opset {BN_MIN_OPSET} or newer (the model has {opset})")
    updated: dict[str, Value] = {}
    for node, mean, var in found:
        x = node.inputs[0]
        if x is None:
            raise TrainingError(f"BatchNormalization node '{node.name}' has no input X")
        for stat in (mean, var):
            data = initializer_tensor(stat)
            stat.type = types.tensor_type(data.elem_type, data.dims)
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
        assert mean.name is not None and var.name is not None  # initializers are named
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
            _replace(graph, node, Node("", node.op_type, node.inputs, attributes.values(), name=node.name))
        elif node.op_type == "Dropout" and len(node.inputs) > 2:
            _replace(graph, node, Node("", "Identity", node.inputs[:1], name=node.name))


def _replace(graph: Graph, old: Node, new: Node) -> None:
    """Put ``new`` (one output) in place of ``old`` (a node of ``graph``), whose other outputs nobody may read."""
    for value in old.outputs[1:]:
        if value.has_uses() or value.is_graph_output():
            raise TrainingError(f"node '{old.name}' ({old.op_type}): its training-only outputs are read")
    graph.insert_before(old, new)
    new.outputs[0].type = old.outputs[0].type
    old.outputs[0].replace_all_uses_with(new.outputs[0], replace_graph_outputs=True)
    graph.remove(old)


PRIME = 2_147_483_647
"""2^31 - 1: the modulus of the dropout hash, so products of two residues fit in int64."""


def training_dropouts(model: Model) -> list[Node]:
    """Dropout nodes whose ``training_mode`` input is a constant true (a training-mode export)."""
    found = []
    for node in model.graph.nodes:
        if node.op_type == "Dropout" and node.domain in ("", "ai.onnx") and len(node.inputs) > 2:
            flag = GradBuilder(model.graph, 13).constant_ints(node.inputs[2])
            if flag == [1]:
                found.append(node)
    return found


def seeded_dropout(model: Model, nodes: list[Node], seed: Value, step: Value, opset: int) -> None:
    """Replace training-mode Dropout nodes by ``x * keep / (1 - ratio)`` with ``keep`` drawn by a hash
    of (seed, step, node, element) in int64 arithmetic, so the masks follow from the seed and the step
    alone (a resumed run draws the same ones) and need no random op without a seed input.

    The hash: ``h = (i * 48271 + base) mod p``, then two rounds of ``h = (h * h + c) mod p`` and one
    multiplication, with ``p = 2^31 - 1``; ``u = h / p`` is uniform on [0, 1) and ``keep = u >= ratio``.
    """
    graph = model.graph
    for k, node in enumerate(nodes):
        x, ratio = node.inputs[0], node.inputs[1]
        if x is None:
            raise TrainingError(f"Dropout node '{node.name}' has no input data")
        b = GradBuilder(graph, opset)
        b.insert_before = node
        rate = b.const(np.float32(0.5)) if ratio is None else b.Cast(ratio, to=onnx.TensorProto.FLOAT)
        keep = b.Reshape(b.GreaterOrEqual(_uniform(b, x, seed, step, k), rate), b.Shape(x))
        scale = b.CastLike(b.Div(b.const(np.float32(1)), b.Sub(b.const(np.float32(1)), rate)), x)
        y = b.Mul(b.Mul(x, b.CastLike(keep, x)), scale)
        outputs = node.outputs
        y.type = outputs[0].type
        outputs[0].replace_all_uses_with(y, replace_graph_outputs=True)
        if len(outputs) > 1 and outputs[1].name:
            outputs[1].replace_all_uses_with(keep, replace_graph_outputs=True)
        graph.remove(node)


def _mod(b: GradBuilder, v: Value) -> Value:
    return b.Mod(v, b.const(np.int64(PRIME)))


def _uniform(b: GradBuilder, x: Value, seed: Value, step: Value, k: int) -> Value:
    """One float32 in [0, 1) per element of ``x`` (flattened), from (seed, step, k, element index)."""
    mixed = b.Add(b.Mul(_mod(b, seed), b.const(np.int64(1_000_003))), b.Mul(_mod(b, step), b.const(np.int64(7919))))
    base = _mod(b, b.Add(mixed, b.const(np.int64(104_729 * (k + 1)))))
    base = _mod(b, b.Add(b.Mul(base, b.const(np.int64(69621))), b.const(np.int64(1))))
    index = b.Range(b.const(np.int64(0)), b.Size(x), b.const(np.int64(1)))
    h = _mod(b, b.Add(b.Mul(index, b.const(np.int64(48271))), base))
    for c in (12345, 2_718_281):
        h = _mod(b, b.Add(b.Mul(h, h), b.const(np.int64(c))))
    h = _mod(b, b.Mul(h, b.const(np.int64(48271))))
    return b.Div(b.Cast(h, to=onnx.TensorProto.FLOAT), b.const(np.float32(PRIME)))
