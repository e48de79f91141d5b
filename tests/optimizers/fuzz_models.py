"""Seeded random ONNX models that mix the ops the optimizer's passes rewrite.

``random_model(seed)`` builds a small graph over one float input ``X`` of shape
``[N, 3, H, 4]`` (``N`` and ``H`` symbolic): a chain of randomly chosen blocks, each of which
adds a few nodes the passes know (no-op forms and real ones alike), with some intermediate
values, input aliases and duplicate outputs exposed as graph outputs.
"""

from __future__ import annotations

import random

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSETS = (13, 17)
SYMBOLS = ("N", "H")


class _Builder:
    """Nodes, initializers and fresh names for one random graph; the current value and its shape."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.np_rng = np.random.default_rng(rng.randrange(2**31))
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0
        self.exposed: list[str] = []  # values to make graph outputs
        self.opset = OPSETS[-1]

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}_{self.count}"

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> list[str]:
        outs = [self.name(op.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name("n_" + op), **attrs))
        return outs

    def const(self, array, as_node: bool | None = None) -> str:
        array = np.asarray(array)
        name = self.name("c")
        if as_node if as_node is not None else self.rng.random() < 0.3:
            self.nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name)))
        else:
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def maybe_expose(self, value: str) -> None:
        """Make an intermediate value a graph output now and then."""
        if self.rng.random() < 0.15:
            self.exposed.append(value)

    def weights(self, *shape) -> np.ndarray:
        return self.np_rng.standard_normal(shape).astype(np.float32)


# Every block takes (builder, value, shape) with shape a list of int | str and returns (value, shape).


def b_identity(b, x, s):
    return b.node("Identity", [x])[0], s


def b_dropout(b, x, s):
    if b.rng.random() < 0.5:
        y, mask = b.node("Dropout", [x], 2)
        if b.rng.random() < 0.5:
            b.exposed.append(mask)
        else:
            y = b.node("Mul", [y, b.node("Cast", [mask], to=TensorProto.FLOAT)[0]])[0]
        return y, s
    ratio = b.const(np.array(0.5, np.float32))
    return b.node("Dropout", [x, ratio])[0], s


def b_cast_chain(b, x, s):
    chain = b.rng.choice(
        [
            [TensorProto.DOUBLE],
            [TensorProto.FLOAT16],
            [TensorProto.INT32],
            [TensorProto.FLOAT],
            [TensorProto.DOUBLE, TensorProto.FLOAT16],
            [TensorProto.FLOAT16, TensorProto.DOUBLE],
            [TensorProto.INT64, TensorProto.DOUBLE],
            [TensorProto.DOUBLE, TensorProto.INT32],
            [TensorProto.BOOL],
            [TensorProto.INT8],
            [TensorProto.UINT8, TensorProto.INT32],
        ]
    )
    # Round(4x) + 0.3: off the integer and half-precision grids (so a dropped narrowing cast
    # shows), yet far from their rounding boundaries (so last-bit changes upstream do not flip them)
    y = b.node("Round", [b.node("Mul", [x, b.const(np.array(4.0, np.float32))])[0]])[0]
    y = b.node("Add", [y, b.const(np.array(0.3, np.float32))])[0]
    for to in chain + [TensorProto.FLOAT]:
        y = b.node("Cast", [y], to=to)[0]
    return y, s


def b_reshape_noop(b, x, s):
    kind = b.rng.randrange(4)
    if kind == 0:
        target = [0] * len(s)
    elif kind == 1:
        target = [0] * len(s)
        target[b.rng.randrange(len(s))] = -1
    elif kind == 2:  # flatten and reshape back with static tail
        if not all(isinstance(d, int) for d in s[1:]):
            return b_flatten_back(b, x, s)
        flat = b.node("Reshape", [x, b.const(np.array([0, -1], np.int64))])[0]
        return b.node("Reshape", [flat, b.const(np.array([0, *s[1:]], np.int64))])[0], s
    else:
        return b_flatten_back(b, x, s)
    return b.node("Reshape", [x, b.const(np.array(target, np.int64))])[0], s


def b_flatten_back(b, x, s):
    """Flatten then Reshape back through a Shape->Gather/Slice->Concat chain."""
    flat = b.node("Flatten", [x], axis=b.rng.randrange(len(s) + 1))[0]
    shape = b.node("Shape", [x])[0]
    if b.rng.random() < 0.5:
        back = shape
    else:
        parts = []
        for i in range(len(s)):
            g = b.node("Gather", [shape, b.const(np.array(i, np.int64))], axis=0)[0]
            parts.append(b.node("Unsqueeze", [g, b.const(np.array([0], np.int64))])[0])
        back = b.node("Concat", parts, axis=0)[0]
    return b.node("Reshape", [flat, back])[0], s


def b_squeeze_unsqueeze(b, x, s):
    axis = b.rng.randrange(len(s) + 1)
    u = b.node("Unsqueeze", [x, b.const(np.array([axis], np.int64))])[0]
    if b.rng.random() < 0.3:
        u = b.node("Relu", [u])[0]
    neg = axis - (len(s) + 1) if b.rng.random() < 0.5 else axis
    return b.node("Squeeze", [u, b.const(np.array([neg], np.int64))])[0], s


def b_expand(b, x, s):
    kind = b.rng.randrange(3)
    if kind == 0:
        return b.node("Expand", [x, b.const(np.array([1], np.int64))])[0], s
    if kind == 1:
        return b.node("Expand", [x, b.node("Shape", [x])[0]])[0], s
    # a real broadcast: [..., W] -> [2, ..., W]
    y = b.node("Expand", [x, b.const(np.array([2] + [1] * len(s), np.int64))])[0]
    return b.node("ReduceSum", [y, b.const(np.array([0], np.int64))], keepdims=0)[0], s


def b_transpose(b, x, s):
    r = len(s)
    perm = list(range(r))
    b.rng.shuffle(perm)
    kind = b.rng.randrange(3)
    if kind == 0:
        return b.node("Transpose", [x], perm=list(range(r)))[0], s
    y = b.node("Transpose", [x], perm=perm)[0]
    ys = [s[p] for p in perm]
    if kind == 1:
        inv = list(np.argsort(perm))
        return b.node("Transpose", [y], perm=[int(i) for i in inv])[0], s
    if b.rng.random() < 0.3:
        y = b.node("Neg", [y])[0]
    perm2 = list(range(r))
    b.rng.shuffle(perm2)
    return b.node("Transpose", [y], perm=perm2)[0], [ys[p] for p in perm2]


def b_pad(b, x, s):
    r = len(s)
    if b.rng.random() < 0.5:
        pads = [0] * (2 * r)
    else:
        pads = [b.rng.randrange(2) for _ in range(2 * r)]
    if b.rng.random() < 0.3:  # crop one static dimension
        static = [i for i, d in enumerate(s) if isinstance(d, int) and d > 1]
        if static:
            i = b.rng.choice(static)
            pads[i + b.rng.choice([0, r])] = -1
    mode = b.rng.choice(["constant", "constant", "reflect", "edge"])
    inputs = [x, b.const(np.array(pads, np.int64))]
    if mode == "constant" and b.rng.random() < 0.5:
        inputs.append(b.const(np.array(b.rng.choice([0.0, 1.5]), np.float32)))
    if mode == "reflect" and any(p and not (isinstance(d, int) and d > 1) for p, d in zip(pads, s + s)):
        mode = "edge"  # reflect needs size > pad; symbolic dims may be 1
    y = b.node("Pad", inputs, mode=mode)[0]
    return y, [d if not (pads[i] or pads[i + r]) else _grow(d, pads[i] + pads[i + r]) for i, d in enumerate(s)]


def _grow(d, n):
    return d + n if isinstance(d, int) else None


def b_slice(b, x, s):
    r = len(s)
    axis = b.rng.randrange(r)
    dim = s[axis]
    kind = b.rng.randrange(5)
    if kind == 1 and not (isinstance(dim, int) and dim > 1):
        kind = 2  # dropping the last element of a dimension of size 1 leaves an empty tensor
    if kind == 0:  # full range
        starts, ends, steps = [0], [b.rng.choice([2**63 - 1, 2**31 - 1, 1000])], [1]
    elif kind == 1:
        starts, ends, steps = [0], [b.rng.choice([-1, dim - 1])], [1]
    elif kind == 2:
        starts, ends, steps = [-1], [-(2**63)], [-1]  # reverse
    elif kind == 3:  # the first element only: the whole dim only where it is 1
        starts, ends, steps = [0], [1], [1]
    else:  # ends exactly at a static dim, or at 2 (part of a symbolic one)
        starts, ends, steps = [0], [dim if isinstance(dim, int) else 2], [1]
    inputs = [
        x,
        b.const(np.array(starts, np.int64)),
        b.const(np.array(ends, np.int64)),
        b.const(np.array([axis - r if b.rng.random() < 0.3 else axis], np.int64)),
        b.const(np.array(steps, np.int64)),
    ]
    if steps == [1] and b.rng.random() < 0.5:
        inputs = inputs[:4]
    y = b.node("Slice", inputs)[0]
    out = list(s)
    if kind in (1, 3):
        out[axis] = ends[0] if isinstance(dim, int) and ends[0] > 0 else (dim - 1 if kind == 1 else 1)
    elif kind == 4 and not isinstance(dim, int):
        out[axis] = None
    return y, out


def b_split_concat(b, x, s):
    r = len(s)
    axis = b.rng.randrange(r)
    if b.rng.random() < 0.4 or not isinstance(s[axis], int) or s[axis] < 2:
        y = b.node("Split", [x], 1, axis=axis)[0]
        if b.rng.random() < 0.5:
            y = b.node("Concat", [y], axis=axis)[0]
        return y, s
    k = b.rng.randrange(1, s[axis])
    parts = b.node("Split", [x, b.const(np.array([k, s[axis] - k], np.int64))], 2, axis=axis)
    if b.rng.random() < 0.3:
        b.exposed.append(parts[1])
    order = parts if b.rng.random() < 0.7 else parts[::-1]
    return b.node("Concat", order, axis=axis - r if b.rng.random() < 0.5 else axis)[0], s


def b_arith_const(b, x, s):
    op = b.rng.choice(["Add", "Sub", "Mul", "Div"])
    val = b.rng.choice([0.0, 1.0, 1.0, 0.0, -1.0, 2.0])
    r = len(s)
    cshape = b.rng.choice([[], [1], [1] * r, [s[-1]] if isinstance(s[-1], int) else [1], [2] + [1] * r])
    c = b.const(np.full(cshape, val, np.float32))
    y = b.node(op, [x, c] if b.rng.random() < 0.7 else [c, x])[0]
    if len(cshape) > r:  # the constant broadcast x to a bigger shape: reduce it back
        y = b.node("ReduceMean", [y], axes=[0], keepdims=0)[0]
    return y, s


def b_matmul_add(b, x, s):
    if not isinstance(s[-1], int):
        return x, s
    k, m = s[-1], b.rng.choice([s[-1], 2, 5])
    y = b.node("MatMul", [x, b.const(b.weights(k, m))])[0]
    b.maybe_expose(y)
    if b.rng.random() < 0.8:
        shape = b.rng.choice([[m], [1, m], [1], [2, 1, 1, 1, m], [1, 1, 1, 1, 1]])
        bias = b.const(b.weights(*shape))
        y = b.node("Add", [bias, y] if b.rng.random() < 0.3 else [y, bias])[0]
        if len(shape) == 5:
            y = b.node("ReduceMax", [y], axes=[0], keepdims=0)[0]
    return y, s[:-1] + [m]


def b_gemm_path(b, x, s):
    """Flatten to 2D, MatMul+Add (Gemm candidate), reshape back to 4D."""
    if len(s) != 4 or not all(isinstance(d, int) for d in s[1:]):
        return x, s
    f = int(np.prod(s[1:]))
    flat = b.node("Flatten", [x], axis=1)[0]
    y = b.node("MatMul", [flat, b.const(b.weights(f, 6))])[0]
    b.maybe_expose(y)
    bias_shape = b.rng.choice([[6], [1, 6], [1], [1, 1], [2, 1, 6]])
    y = b.node("Add", [y, b.const(b.weights(*bias_shape))])[0]
    if len(bias_shape) == 3:  # the bias broadcast the product up a rank: not a Gemm's C
        y = b.node("ReduceMean", [y], axes=[0], keepdims=0)[0]
    if b.rng.random() < 0.5:
        y = b.node("Relu", [y])[0]
    return b.node("Reshape", [y, b.const(np.array([-1, 1, 2, 3], np.int64))])[0], [s[0], 1, 2, 3]


def _conv(b, x, s):
    c = s[1]
    m = b.rng.choice([2, 3])
    k = b.rng.choice([1, 3])
    group = 1
    if c == m and b.rng.random() < 0.3:
        group = c
    w = b.const(b.weights(m, c // group, k, k))
    inputs = [x, w]
    if b.rng.random() < 0.6:
        inputs.append(b.const(b.weights(m)))
    y = b.node("Conv", inputs, pads=[k // 2] * 4, group=group)[0]
    return y, [s[0], m, s[2], s[3]]


def b_conv_bn(b, x, s):
    if len(s) != 4 or not isinstance(s[1], int):
        return x, s
    y, ys = _conv(b, x, s)
    m = ys[1]
    scale, bias = b.const(b.weights(m)), b.const(b.weights(m))
    mean = b.const(b.weights(m))
    var = b.const(np.abs(b.weights(m)) + 0.5)
    b.maybe_expose(y)
    y = b.node("BatchNormalization", [y, scale, bias, mean, var], epsilon=b.rng.choice([1e-5, 1e-3]))[0]
    return y, ys


def b_conv_affine(b, x, s):
    if len(s) != 4 or not isinstance(s[1], int):
        return x, s
    y, ys = _conv(b, x, s)
    b.maybe_expose(y)
    m = ys[1]
    for _ in range(b.rng.randrange(1, 3)):
        op = b.rng.choice(["Add", "Mul", "Sub", "Div"])
        w = ys[3] if isinstance(ys[3], int) else 1
        shape = b.rng.choice([[m, 1, 1], [1, m, 1, 1], [1], [], [1, 1, 1, w], [2, 1, m, 1, 1], [m, 1, w]])
        c = b.weights(*shape) if shape else b.weights(1).reshape(())
        if op == "Div":
            c = np.abs(c) + 0.5
        # a constant divided by y would turn the signed zeros of exact-zero outputs (which
        # fusions cannot reproduce) into infinities of either sign
        y = b.node(op, [y, b.const(c)] if op == "Div" or b.rng.random() < 0.7 else [b.const(c), y])[0]
        if len(shape) == 5:
            y = b.node("ReduceMean", [y], axes=[0], keepdims=0)[0]
    return y, ys


def b_pad_conv_pool(b, x, s):
    if len(s) != 4 or not all(isinstance(d, int) for d in s[1:2] + s[3:]):
        return x, s
    p = b.rng.randrange(1, 3)
    pads = [0, 0, p, p, 0, 0, p, p] if b.rng.random() < 0.7 else [0, 0, 2, 0, 0, 0, 0, 2]
    inputs = [x, b.const(np.array(pads, np.int64))]
    pad_value = b.rng.choice([None, 0.0, -3.0])
    if pad_value is not None:
        inputs.append(b.const(np.array(pad_value, np.float32)))
    y = b.node("Pad", inputs)[0]
    kind = b.rng.choice(["Conv", "MaxPool", "AveragePool", "AveragePoolInc"])
    h = s[2] + pads[2] + pads[6] if isinstance(s[2], int) else None
    w = s[3] + pads[3] + pads[7]
    if kind == "Conv":
        m = 2
        y = b.node("Conv", [y, b.const(b.weights(m, s[1], 3, 3))])[0]
        return y, [s[0], m, h - 2 if h else None, w - 2]
    if kind == "MaxPool":
        y = b.node("MaxPool", [y], kernel_shape=[3, 3])[0]
    elif kind == "AveragePool":
        y = b.node("AveragePool", [y], kernel_shape=[3, 3])[0]
    else:
        y = b.node("AveragePool", [y], kernel_shape=[3, 3], count_include_pad=1, pads=[1, 1, 1, 1])[0]
        return y, [s[0], s[1], h, w]
    return y, [s[0], s[1], h - 2 if h else None, w - 2]


def b_shape_chain(b, x, s):
    """x -> Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) -> back with a Shape chain of x."""
    shape = b.node("Shape", [x])[0]
    n = b.node("Gather", [shape, b.const(np.array(0, np.int64))], axis=0)[0]
    n1 = b.node("Unsqueeze", [n, b.const(np.array([0], np.int64))])[0]
    tail = b.const(np.array([-1], np.int64))
    flat = b.node("Reshape", [x, b.node("Concat", [n1, tail], axis=0)[0]])[0]
    flat = b.node("Relu", [flat])[0] if b.rng.random() < 0.5 else flat
    if b.rng.random() < 0.5:
        rest = b.node("Slice", [shape, b.const(np.array([1], np.int64)), b.const(np.array([2**62], np.int64))])[0]
        back = b.node("Concat", [n1, rest], axis=0)[0]
    else:
        back = b.node("Shape", [x])[0]
    return b.node("Reshape", [flat, back])[0], s


def b_const_subgraph(b, x, s):
    a = b.const(b.weights(*([1] * (len(s) - 1)), s[-1] if isinstance(s[-1], int) else 1), as_node=True)
    c = b.const(b.weights(1), as_node=b.rng.random() < 0.5)
    t = b.node(b.rng.choice(["Add", "Mul", "Sub"]), [a, c])[0]
    t = b.node(b.rng.choice(["Relu", "Neg", "Abs", "Identity"]), [t])[0]
    if b.rng.random() < 0.4:
        t = b.node(
            "Unsqueeze", [b.node("Squeeze", [t, b.const(np.array([0], np.int64))])[0], b.const(np.array([0], np.int64))]
        )[0]
    return b.node("Add", [x, t])[0], s


def b_duplicates(b, x, s):
    op = b.rng.choice(["Relu", "Sigmoid", "Exp", "Neg"])
    if op == "Exp":
        x = b.node("Tanh", [x])[0]
    y1 = b.node(op, [x])[0]
    y2 = b.node(op, [x])[0]
    if b.rng.random() < 0.4:
        b.exposed.append(y2)
    c1 = b.const(np.array([2.0], np.float32))
    c2 = b.const(np.array([2.0], np.float32))
    z1 = b.node("Mul", [y1, c1])[0]
    z2 = b.node("Mul", [y2, c2])[0]
    return b.node(b.rng.choice(["Sub", "Add"]), [z1, z2])[0], s


def b_if_const(b, x, s):
    cond = b.rng.random() < 0.5
    cname = b.const(np.array(cond), as_node=b.rng.random() < 0.5)
    then_out, else_out = b.name("then"), b.name("else")
    then_g = helper.make_graph(
        [helper.make_node("Relu", [x], [then_out])],
        b.name("then_g"),
        [],
        [helper.make_tensor_value_info(then_out, TensorProto.FLOAT, None)],
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", [x], [else_out])],
        b.name("else_g"),
        [],
        [helper.make_tensor_value_info(else_out, TensorProto.FLOAT, None)],
    )
    return b.node("If", [cname], then_branch=then_g, else_branch=else_g)[0], s


def b_cse_traps(b, x, s):
    """Look-alike constants and nodes that CSE must keep apart: same bytes or values, other
    dtype, shape or attributes."""
    kind = b.rng.randrange(4)
    if kind == 0:  # same values, different shapes: [2] and [2, 1] broadcast differently
        c1 = b.const(np.array([1.0, 2.0], np.float32))
        c2 = b.const(np.array([[1.0], [2.0]], np.float32))
        y1 = b.node("Mul", [x, c1])[0] if s[-1] == 2 else b.node("Mul", [x, b.const(np.float32(2.0))])[0]
        y2 = b.node("Mul", [x, c2])[0] if s[-2] == 2 else b.node("Mul", [x, b.const(np.float32(2.0).reshape(1))])[0]
        return b.node("Sub", [y1, y2])[0], s
    if kind == 1:  # same bytes, different dtypes
        f = b.const(np.array([1.0], np.float32))
        i = b.const(np.array([1.0], np.float32).view(np.int32))
        y = b.node("Add", [x, f])[0]
        yi = b.node(
            "Cast", [b.node("Add", [b.node("Cast", [x], to=TensorProto.INT32)[0], i])[0]], to=TensorProto.FLOAT
        )[0]
        return b.node("Add", [y, b.node("Mul", [yi, b.const(np.array([1e-9], np.float32))])[0]])[0], s
    if kind == 2:  # same op and input, different attributes
        perm = list(range(len(s)))
        y1 = b.node("ReduceSum", [x, b.const(np.array([len(s) - 1], np.int64))], keepdims=1)[0]
        y2 = b.node("ReduceSum", [x, b.const(np.array([len(s) - 1], np.int64))], keepdims=1, noop_with_empty_axes=1)[0]
        y3 = b.node("Transpose", [x], perm=perm)[0]
        # on the input itself: after a fusion's last-bit changes, half-precision rounding may flip
        y4 = b.node("Cast", ["X"], to=TensorProto.FLOAT16)[0]
        y5 = b.node("Cast", ["X"], to=TensorProto.DOUBLE)[0]
        d = b.node(
            "Sub", [b.node("Cast", [y4], to=TensorProto.FLOAT)[0], b.node("Cast", [y5], to=TensorProto.FLOAT)[0]]
        )[0]
        d = b.node("ReduceSum", [b.node("Abs", [d])[0]], keepdims=0)[0]
        return b.node("Add", [b.node("Add", [y3, d])[0], b.node("Sub", [y1, y2])[0]])[0], s
    # same Constant node value, one float and one double
    c1 = b.const(np.array(3.0, np.float32), as_node=True)
    c2 = b.const(np.array(3.0, np.float64), as_node=True)
    y = b.node("Cast", [b.node("Mul", [b.node("Cast", [x], to=TensorProto.DOUBLE)[0], c2])[0]], to=TensorProto.FLOAT)[0]
    return b.node("Add", [b.node("Mul", [x, c1])[0], y])[0], s


def b_squeeze_all(b, x, s):
    """Squeeze without axes drops whatever dims are 1 at run time, then reshape back."""
    y = b.node("Squeeze", [x])[0]
    y = b.node("Softmax", [y], axis=0)[0]  # axis 0 is whichever dim survived first
    return b.node("Reshape", [y, b.node("Shape", [x])[0]])[0], s


def b_grouped_reshape(b, x, s):
    """Transpose, then Reshape to products of consecutive dims computed from Shape(x) (Gather, Mul,
    constants for static dims, at most one -1), then back through Shape of the transposed value."""
    r = len(s)
    perm = list(range(r))
    b.rng.shuffle(perm)
    t = b.node("Transpose", [x], perm=perm)[0]
    ts = [s[p] for p in perm]
    shape = b.node("Shape", [x])[0]
    cuts = sorted(b.rng.sample(range(1, r), b.rng.randrange(r)))
    groups = [list(range(lo, hi)) for lo, hi in zip([0, *cuts], [*cuts, r])]
    minus = b.rng.randrange(len(groups)) if b.rng.random() < 0.4 else None
    parts = []
    for g, axes in enumerate(groups):
        if g == minus:
            parts.append(b.const(np.array([-1], np.int64)))
            continue
        if all(isinstance(ts[a], int) for a in axes) and b.rng.random() < 0.5:
            parts.append(b.const(np.array([int(np.prod([ts[a] for a in axes]))], np.int64)))
            continue
        product = None
        for a in axes:
            if b.opset >= 15 and b.rng.random() < 0.3:
                dim = b.node("Shape", [x], start=perm[a], end=perm[a] + 1)[0]
            else:
                dim = b.node("Gather", [shape, b.const(np.array([perm[a]], np.int64))], axis=0)[0]
            product = dim if product is None else b.node("Mul", [product, dim])[0]
        parts.append(product)
    y = b.node("Reshape", [t, b.node("Concat", parts, axis=0)[0] if len(parts) > 1 else parts[0]])[0]
    y = b.node("Sigmoid", [y])[0]
    b.maybe_expose(y)
    back = b.node("Reshape", [y, b.node("Shape", [t])[0]])[0]
    inv = [int(i) for i in np.argsort(perm)]
    return b.node("Transpose", [back], perm=inv)[0], s


def b_squeeze_after_unsqueeze(b, x, s):
    """Unsqueeze then Squeeze without axes: that drops x's own dims of size 1 as well."""
    u = b.node("Unsqueeze", [x, b.const(np.array([b.rng.randrange(len(s) + 1)], np.int64))])[0]
    y = b.node("Softmax", [b.node("Squeeze", [u])[0]], axis=0)[0]
    return b.node("Reshape", [y, b.node("Shape", [x])[0]])[0], s


def b_permuted_reshape(b, x, s):
    """Reshape x to its own dims in another order (read from Shape(x) by Gather or a negative-step
    Slice), then back: a dim equal to the data's at another position is not a "keep" (0)."""
    r = len(s)
    shape = b.node("Shape", [x])[0]
    if b.rng.random() < 0.4:
        target = b.node(
            "Slice",
            [
                shape,
                b.const(np.array([-1], np.int64)),
                b.const(np.array([-(2**62)], np.int64)),
                b.const(np.array([0], np.int64)),
                b.const(np.array([-1], np.int64)),
            ],
        )[0]
    else:
        perm = list(range(r))
        b.rng.shuffle(perm)
        target = b.node("Gather", [shape, b.const(np.array(perm, np.int64))], axis=0)[0]
    y = b.node("Reshape", [x, target])[0]
    y = b.node("Relu", [y])[0]
    b.maybe_expose(y)
    return b.node("Reshape", [y, shape])[0], s


def b_shape_values(b, x, s):
    """Values computed from x's run-time shape: Size, a gathered dim, ConstantOfShape, Expand."""
    kind = b.rng.randrange(4)
    if kind == 0:
        size = b.node("Cast", [b.node("Size", [x])[0]], to=TensorProto.FLOAT)[0]
        return b.node("Div", [x, size])[0], s
    if kind == 1:
        dim = b.node("Gather", [b.node("Shape", [x])[0], b.const(np.array(b.rng.randrange(len(s)), np.int64))], axis=0)[
            0
        ]
        return b.node("Mul", [x, b.node("Cast", [dim], to=TensorProto.FLOAT)[0]])[0], s
    if kind == 2:
        c = b.node(
            "ConstantOfShape", [b.node("Shape", [x])[0]], value=numpy_helper.from_array(np.array([0.5], np.float32))
        )[0]
        return b.node("Add", [x, c])[0], s
    e = b.node("Expand", [b.const(np.array([1.5], np.float32)), b.node("Shape", [x])[0]])[0]
    return b.node("Mul", [e, x])[0], s


def b_if_runtime(b, x, s):
    """An If on a run-time condition whose branches hold no-ops, outer reads, a Shape chain and a
    duplicate of an outer node (CSE must not merge across scopes)."""
    outer = b.node("Sigmoid", [x])[0]
    total = b.node("ReduceSum", [x], keepdims=0)[0]
    cond = b.node("Greater", [total, b.const(np.array(0.0, np.float32))])[0]
    branches = []
    for tag in ("then", "else"):
        zero, one = b.name("zero"), b.name("one")
        a, m, dup, res, shape, out = (b.name(f"{tag}_{k}") for k in ("a", "m", "dup", "res", "shape", "out"))
        nodes = [
            helper.make_node("Constant", [], [zero], value=numpy_helper.from_array(np.array(0.0, np.float32))),
            helper.make_node("Constant", [], [one], value=numpy_helper.from_array(np.array(1.0, np.float32))),
            helper.make_node("Add", [x, zero], [a]),
            helper.make_node("Mul", [a, one], [m]),
            helper.make_node("Sigmoid", [x], [dup]),
            helper.make_node("Sub" if tag == "then" else "Add", [m, dup], [res]),
            helper.make_node("Shape", [x], [shape]),
            helper.make_node("Reshape", [res, shape], [out]),
        ]
        branches.append(
            helper.make_graph(
                nodes, b.name(f"{tag}_g"), [], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
            )
        )
    y = b.node("If", [cond], then_branch=branches[0], else_branch=branches[1])[0]
    return b.node("Add", [y, outer])[0], s


BLOCKS = [
    b_if_runtime,
    b_permuted_reshape,
    b_shape_values,
    b_grouped_reshape,
    b_squeeze_after_unsqueeze,
    b_cse_traps,
    b_squeeze_all,
    b_identity,
    b_dropout,
    b_cast_chain,
    b_reshape_noop,
    b_flatten_back,
    b_squeeze_unsqueeze,
    b_expand,
    b_transpose,
    b_pad,
    b_slice,
    b_split_concat,
    b_arith_const,
    b_matmul_add,
    b_gemm_path,
    b_conv_bn,
    b_conv_affine,
    b_pad_conv_pool,
    b_shape_chain,
    b_const_subgraph,
    b_duplicates,
    b_if_const,
]


def random_model(seed: int, blocks: int | None = None) -> onnx.ModelProto:
    """A random model over ``X: float[N, 3, H, 4]``; its outputs include intermediate values."""
    rng = random.Random(seed)
    b = _Builder(rng)
    b.opset = rng.choice(OPSETS)
    x, s = "X", ["N", 3, "H", 4]
    outputs: list[str] = []
    if rng.random() < 0.2:
        outputs.append(b.node("Identity", ["X"])[0])  # an output aliasing the input
    if rng.random() < 0.1:
        outputs.append("X")  # the input itself is an output
    for _ in range(blocks or rng.randrange(3, 9)):
        block = rng.choice(BLOCKS)
        x, s = block(b, x, list(s))
        if rng.random() < 0.15 and x != "X":
            outputs.append(x)
    outputs.append(x)
    if rng.random() < 0.2:
        outputs.append(b.node("Identity", [x])[0])  # two outputs with the same value
    outputs += b.exposed
    unique = list(dict.fromkeys(outputs))
    x_info = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, "H", 4])
    graph = helper.make_graph(
        b.nodes,
        f"fuzz_{seed}",
        [x_info],
        [x_info if o == "X" else helper.make_value_info(o, onnx.TypeProto()) for o in unique],
        initializer=b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", b.opset)], ir_version=8)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    types = {v.name: v.type for v in [*inferred.graph.value_info, *inferred.graph.output, x_info]}
    for out in model.graph.output:
        out.type.CopyFrom(types[out.name])
    _declare_unknown_ranks(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def _declare_unknown_ranks(model: onnx.ModelProto) -> None:
    """Give outputs whose rank inference left open (Reshape to a computed shape) a shape of
    unnamed dims of the rank they have at run time (the checker wants every output's rank)."""
    open_outputs = [o for o in model.graph.output if not o.type.tensor_type.HasField("shape")]
    if not open_outputs:
        return
    from onnxgraph.runtime.sessions import create_session

    session = create_session(model, optimization="disable")
    results = session.run([o.name for o in open_outputs], {"X": np.zeros((2, 3, 3, 4), np.float32)})
    for out, result in zip(open_outputs, results):
        shape = out.type.tensor_type.shape
        for _ in range(result.ndim):
            shape.dim.add()
