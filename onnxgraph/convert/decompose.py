"""Our own opset down-conversions for ops that onnx.version_converter cannot take below their first
version: each op is rewritten into older standard ops.

| op | first opset | rewritten as |
| --- | --- | --- |
| Gelu | 20 | ``0.5·x·(1 + Erf(x/√2))``, or the tanh form when ``approximate="tanh"`` |
| LayerNormalization | 17 | ReduceMean, Sub, Mul, Add, Sqrt, Div (+ scale and bias) over the normalized axes |
| RMSNormalization | 23 | ``x / Sqrt(ReduceMean(x²) + ε) · scale`` |
| Split with ``num_outputs`` | 18 | Split without it (an equal split, what Split-13 does) |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from onnxgraph import types
from onnxgraph.builder import OpBuilder
from onnxgraph.node import Node
from onnxgraph.value import Value

Rewrite = Callable[[OpBuilder, Node, int], list[Value]]
"""``rewrite(op, node, target_opset) -> new outputs`` (the builder inserts before ``node``)."""


def _dtype(value: Value) -> np.dtype:
    elem = value.elem_type
    return types.np_dtype(elem) if elem is not None and elem in types.FLOAT_TYPES else np.dtype(np.float32)


def _reduce_mean(op: OpBuilder, x: Value, axes: list[int], opset: int) -> Value:
    if opset >= 18:
        return op.ReduceMean(x, op.const(np.array(axes, np.int64), name="axes"), keepdims=1)
    return op.ReduceMean(x, axes=axes, keepdims=1)


def _normalized_axes(node: Node, x: Value) -> list[int]:
    axis = node.attr("axis", -1)
    if axis < 0:
        return list(range(axis, 0))
    if x.shape is None:
        raise ValueError(f"{node.op_type} with axis={axis} needs the input's rank to be known")
    return list(range(axis, len(x.shape)))


def _gelu(op: OpBuilder, node: Node, target: int) -> list[Value]:
    x = node.input(0)
    dt = _dtype(x)
    half_x = op.Mul(x, op.const(dt.type(0.5), name="half"))
    if node.attr("approximate", "none") == "tanh":
        cube = op.Mul(op.Mul(x, x), x)
        inner = op.Add(x, op.Mul(cube, op.const(dt.type(0.044715), name="gelu_c")))
        core = op.Tanh(op.Mul(inner, op.const(dt.type(math.sqrt(2 / math.pi)), name="sqrt_2_over_pi")))
    else:
        core = op.Erf(op.Div(x, op.const(dt.type(math.sqrt(2.0)), name="sqrt2")))
    return [op.Mul(half_x, op.Add(core, op.const(dt.type(1.0), name="one")))]


def _layer_norm(op: OpBuilder, node: Node, target: int) -> list[Value]:
    if any(o.name and o.has_uses() or o.is_graph_output() for o in node.outputs[1:]):
        raise ValueError("LayerNormalization's Mean and InvStdDev outputs are used")
    x, scale = node.input(0), node.input(1)
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    axes = _normalized_axes(node, x)
    dt = _dtype(x)
    centered = op.Sub(x, _reduce_mean(op, x, axes, target))
    variance = _reduce_mean(op, op.Mul(centered, centered), axes, target)
    eps = op.const(dt.type(node.attr("epsilon", 1e-5)), name="epsilon")
    y = op.Mul(op.Div(centered, op.Sqrt(op.Add(variance, eps))), scale)
    return [op.Add(y, bias) if bias is not None else y]


def _rms_norm(op: OpBuilder, node: Node, target: int) -> list[Value]:
    x, scale = node.input(0), node.input(1)
    axes = _normalized_axes(node, x)
    dt = _dtype(x)
    # Pow(x, 2), as exporters write it: onnxruntime's session fuses this form back into its RMS norm kernel
    mean_square = _reduce_mean(op, op.Pow(x, op.const(dt.type(2.0), name="two")), axes, target)
    eps = op.const(dt.type(node.attr("epsilon", 1e-5)), name="epsilon")
    return [op.Mul(op.Div(x, op.Sqrt(op.Add(mean_square, eps))), scale)]


def _split(op: OpBuilder, node: Node, target: int) -> list[Value]:
    attrs: dict[str, Any] = {a.name: a for a in node.attributes.values() if a.name != "num_outputs"}
    return list(op.Split(*node.inputs, _outputs=len(node.outputs), **attrs))


DECOMPOSITIONS: dict[str, tuple[int, Rewrite, Callable[[Node], bool]]] = {
    "Gelu": (20, _gelu, lambda node: True),
    "LayerNormalization": (17, _layer_norm, lambda node: True),
    "RMSNormalization": (23, _rms_norm, lambda node: True),
    "Split": (18, _split, lambda node: "num_outputs" in node.attributes),
}
"""op type -> (the opset it first needs, rewrite, whether a node needs it)."""


def needs_rewrite(node: Node, target: int) -> bool:
    """True when ``node`` (default domain) is one we rewrite to go below ``target``'s limit."""
    entry = DECOMPOSITIONS.get(node.op_type)
    return node.domain in ("", "ai.onnx") and entry is not None and target < entry[0] and entry[2](node)


def rewrite(node: Node, target: int) -> None:
    """Replace ``node`` by older ops (see the module table); its outputs keep their names and types.

    Raises:
        ValueError: the node cannot be rewritten (the reason is in the message).
    """
    graph = node.graph
    if graph is None:
        raise ValueError(f"{node!r} belongs to no graph")
    op = OpBuilder(graph, insert_before=node, constants_as_nodes=graph.parent_node is not None)
    new_outputs = DECOMPOSITIONS[node.op_type][1](op, node, target)
    for old, new in zip(node.outputs, new_outputs):
        name, old_type = old.name, old.type
        old.replace_all_uses_with(new, replace_graph_outputs=True)
        if new.name != name:
            old.name = graph.fresh_name(f"{name}_replaced")
            new.name = name
        new.type = old_type
    graph.remove(node, safe=False)
