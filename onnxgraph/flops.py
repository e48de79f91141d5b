"""Floating-point operation counts per node, from static shapes.

Conventions (the same as most model profilers):

* one multiply-accumulate (MAC) is two FLOPs; Conv, ConvTranspose, MatMul, Gemm and Einsum report
  MACs, and their FLOPs are ``2·MACs`` plus one add per output element for a bias; matrix products
  of two activations (attention's Q·Kᵀ and P·V) count like those with a weight; the integer and
  QLinear forms count like their float ops; Attention (opset 23) counts both products, the scale
  and a Softmax;
* elementwise ops cost one FLOP per output element (transcendental functions included), variadic
  ones (Sum, Max, Min, Mean) ``inputs - 1`` per element;
* normalization per element: BatchNormalization 2 (folded scale and shift), LayerNormalization,
  GroupNormalization and InstanceNormalization 7 (mean, subtract, square, variance, normalize, scale,
  shift), RMSNormalization 4; Softmax and LogSoftmax 3 (exp, sum, divide);
* pooling: one FLOP per window element per output (global pools: one per input element);
  reductions one per input element;
* data movement (Reshape, Transpose, Gather, Concat, ...) costs nothing.

A cost is None when the shapes it needs are not known (run shape inference first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from onnxgraph import types
from onnxgraph.node import Node
from onnxgraph.value import Value


@dataclass(frozen=True)
class Cost:
    """FLOPs and MACs of one node."""

    flops: int
    macs: int = 0


ELEMENTWISE = frozenset(
    {
        "Abs",
        "Acos",
        "Acosh",
        "Add",
        "And",
        "Asin",
        "Asinh",
        "Atan",
        "Atanh",
        "BitShift",
        "Ceil",
        "Celu",
        "Clip",
        "Cos",
        "Cosh",
        "Div",
        "Elu",
        "Equal",
        "Erf",
        "Exp",
        "Floor",
        "Gelu",
        "Greater",
        "GreaterOrEqual",
        "HardSigmoid",
        "HardSwish",
        "IsInf",
        "IsNaN",
        "LeakyRelu",
        "Less",
        "LessOrEqual",
        "Log",
        "Mish",
        "Mod",
        "Mul",
        "Neg",
        "Not",
        "Or",
        "PRelu",
        "Pow",
        "Reciprocal",
        "Relu",
        "Round",
        "Selu",
        "Shrink",
        "Sigmoid",
        "Sign",
        "Sin",
        "Sinh",
        "Softplus",
        "Softsign",
        "Sqrt",
        "Sub",
        "Swish",
        "Tan",
        "Tanh",
        "ThresholdedRelu",
        "Where",
        "Xor",
    }
)
VARIADIC = frozenset({"Sum", "Max", "Min", "Mean"})
NORMALIZATION = {
    "BatchNormalization": 2,
    "LayerNormalization": 7,
    "GroupNormalization": 7,
    "InstanceNormalization": 7,
    "RMSNormalization": 4,
    "LpNormalization": 3,
    "Softmax": 3,
    "LogSoftmax": 3,
}
REDUCTIONS = frozenset(
    {
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
        "ArgMax",
        "ArgMin",
    }
)


def _dims(value: Value | None) -> tuple[int, ...] | None:
    """Static dims of a value, None when the rank or any dimension is unknown."""
    return None if value is None else types.static_dims(value.shape)


def _size(value: Value | None) -> int | None:
    dims = _dims(value)
    return None if dims is None else math.prod(dims)


def _input(node: Node, i: int) -> Value | None:
    return node.inputs[i] if i < len(node.inputs) else None


def _conv(node: Node, weight: int = 1, bias: int = 2) -> Cost | None:
    x, w, y = _dims(node.inputs[0]), _dims(node.inputs[weight]), _dims(node.outputs[0])
    if x is None or w is None or y is None:
        return None
    groups = node.attr("group", 1)
    n, c_in, c_out = x[0], x[1], y[1]
    macs = n * c_out * math.prod(y[2:]) * (c_in // groups) * math.prod(w[2:])
    bias_flops = math.prod(y) if _input(node, bias) is not None else 0
    return Cost(2 * macs + bias_flops, macs)


def _conv_transpose(node: Node) -> Cost | None:
    x, w, y = _dims(node.inputs[0]), _dims(node.inputs[1]), _dims(node.outputs[0])
    if x is None or w is None or y is None:
        return None
    n, c_in = x[0], x[1]
    c_out_per_group = w[1]
    macs = n * c_in * math.prod(x[2:]) * c_out_per_group * math.prod(w[2:])
    bias = math.prod(y) if _input(node, 2) is not None else 0
    return Cost(2 * macs + bias, macs)


def _matmul(node: Node) -> Cost | None:
    a, y = _dims(node.inputs[0]), _dims(node.outputs[0])
    if a is None or y is None:
        return None
    macs = math.prod(y) * a[-1]
    return Cost(2 * macs, macs)


def _attention(node: Node) -> Cost | None:
    """Attention (opset 23): ``softmax(Q·Kᵀ·scale + mask)·V`` per query head, K and V shared by
    ``q_num_heads / kv_num_heads`` heads; scores cost Softmax's 3 FLOPs plus 1 for the scale per element."""
    q, k, v = (_dims(_input(node, i)) for i in range(3))
    if q is None or k is None or v is None:
        return None
    if len(q) == 4:  # [batch, heads, sequence, head size]
        batch, heads, s_q, d_qk = q
        s_kv, d_v = k[-2], v[-1]
    else:  # [batch, sequence, heads * head size]
        heads = node.attr("q_num_heads")
        kv_heads = node.attr("kv_num_heads")
        if heads is None or kv_heads is None:
            return None
        batch, s_q, d_qk = q[0], q[1], q[2] // heads
        s_kv, d_v = k[1], v[2] // kv_heads
    scores = batch * heads * s_q * s_kv
    macs = scores * (d_qk + d_v)
    return Cost(2 * macs + 4 * scores, macs)


def _gemm(node: Node) -> Cost | None:
    a, y = _dims(node.inputs[0]), _dims(node.outputs[0])
    if a is None or y is None:
        return None
    k = a[0] if node.attr("transA", 0) else a[1]
    macs = y[0] * y[1] * k
    bias = math.prod(y) if _input(node, 2) is not None else 0
    return Cost(2 * macs + bias, macs)


def _einsum(node: Node) -> Cost | None:
    equation = str(node.attr("equation", "")).replace(" ", "")
    operands = equation.split("->")[0].split(",")
    if "." in equation or len(operands) != len(node.inputs):
        return None  # ellipsis: the broadcast dims are not named, so the product is not decidable here
    sizes: dict[str, int] = {}
    for letters, value in zip(operands, node.inputs):
        dims = _dims(value)
        if dims is None or len(dims) != len(letters):
            return None
        for letter, d in zip(letters, dims):
            sizes[letter] = max(sizes.get(letter, 1), d)
    product = math.prod(sizes.values())
    if len(operands) == 1:
        return Cost(product)
    macs = product * (len(operands) - 1)
    return Cost(2 * macs, macs)


def _pool(node: Node) -> Cost | None:
    y = _size(node.outputs[0])
    kernel = node.attr("kernel_shape")
    return None if y is None or kernel is None else Cost(y * math.prod(kernel))


def _global_pool(node: Node) -> Cost | None:
    x = _size(node.inputs[0])
    return None if x is None else Cost(x)


def _per_output_element(per: int) -> Callable[[Node], Cost | None]:
    def cost(node: Node) -> Cost | None:
        y = _size(node.outputs[0])
        return None if y is None else Cost(per * y)

    return cost


def _variadic(node: Node) -> Cost | None:
    y = _size(node.outputs[0])
    return None if y is None else Cost(max(len(node.inputs) - 1, 1) * y)


def _normalization(node: Node) -> Cost | None:
    x = _size(node.inputs[0])
    return None if x is None else Cost(NORMALIZATION[node.op_type] * x)


_RULES: dict[str, Callable[[Node], Cost | None]] = {
    "Conv": _conv,
    "ConvInteger": _conv,
    "QLinearConv": lambda node: _conv(node, weight=3, bias=8),
    "ConvTranspose": _conv_transpose,
    "MatMul": _matmul,
    "MatMulInteger": _matmul,
    "QLinearMatMul": _matmul,
    "Attention": _attention,
    "Gemm": _gemm,
    "Einsum": _einsum,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "LpPool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    "GlobalLpPool": _global_pool,
    **{op: _per_output_element(1) for op in ELEMENTWISE},
    **{op: _variadic for op in VARIADIC},
    **{op: _normalization for op in NORMALIZATION},
    **{op: _global_pool for op in REDUCTIONS},
}


def node_cost(node: Node) -> Cost | None:
    """The cost of one node: Cost(0) for ops that compute nothing, None when shapes are unknown."""
    if node.domain not in ("", "ai.onnx"):
        return None
    rule = _RULES.get(node.op_type)
    if rule is None:
        return Cost(0)
    try:
        return rule(node)
    except (IndexError, TypeError, ZeroDivisionError):
        return None
