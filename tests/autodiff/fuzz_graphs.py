"""Seeded random graphs chaining differentiable ops, for the gradient fuzz test.

``random_graph(seed)`` returns a float32 model, float64 feeds and the inputs to differentiate.
Each step appends one op reading values already in the graph (so values get several consumers),
with broadcasting partners of lower rank and size-1 dims, shapes read from a differentiated input,
and symbolic input dims in some graphs. Values stay small (a few dozen elements) so finite
differences are cheap.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MAX_SIZE = 48
"""Largest element count a generated value may have."""


class _Graph:
    """The graph being built: nodes, inputs, initializers and the float values with their shapes."""

    def __init__(self, rng: np.random.Generator, symbolic: bool, opset: int):
        self.rng = rng
        self.opset = opset
        self.symbolic = symbolic
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.feeds: dict[str, np.ndarray] = {}
        self.wrt: list[str] = []
        self.pool: list[tuple[str, tuple[int, ...]]] = []
        self.count = 0

    def name(self, base: str) -> str:
        self.count += 1
        return f"{base}{self.count}"

    def float_input(self, shape, *, low=-1.0, high=1.0, differentiate=True) -> str:
        name = self.name("x")
        dims = [f"d{name}_{i}" if self.symbolic and self.rng.random() < 0.5 else d for i, d in enumerate(shape)]
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
        self.feeds[name] = self.rng.uniform(low, high, shape)
        if differentiate:
            self.wrt.append(name)
        return name

    def const(self, array, base="c") -> str:
        name = self.name(base)
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def ints(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64), "i")

    def axes_op(self, op_type, inputs, axes, input_since: int, **attrs) -> str:
        """An op whose ``axes`` became an input at opset ``input_since``."""
        if self.opset >= input_since:
            return self.op(op_type, [*inputs, self.ints(axes)], **attrs)[0]
        return self.op(op_type, inputs, axes=axes, **attrs)[0]

    def op(self, op_type, inputs, n_out=1, **attrs) -> list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs

    def add(self, name, shape) -> str:
        self.pool.append((name, tuple(int(d) for d in shape)))
        return name

    def pick(self, predicate=lambda shape: True):
        """A value from the pool, recent ones likelier (keeps chains deep)."""
        choices = [v for v in self.pool if predicate(v[1])]
        if not choices:
            return None
        weights = np.arange(1, len(choices) + 1, dtype=float) ** 2
        return choices[self.rng.choice(len(choices), p=weights / weights.sum())]

    def broadcast_partner(self, shape) -> tuple[str, tuple[int, ...]]:
        """A value broadcasting against ``shape``: an existing one of that shape (maybe the same
        value: Max(x, x) ties), a new input of lower rank with size-1 dims or a bigger one, or
        the shared constant initializer."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            same = self.pick(lambda s: s == shape)
            if same is not None:
                return same
        if roll > 0.8:  # a bigger partner: x's size-1 dims and a new leading dim broadcast
            lead = (int(rng.integers(2, 4)),) if rng.random() < 0.5 else ()
            big = (*lead, *(int(rng.integers(2, 4)) if d == 1 else d for d in shape))
            if _size(big) <= MAX_SIZE:
                return self.float_input(big), big
        rank = int(rng.integers(0, len(shape) + 1))
        sub = tuple(d if rng.random() < 0.6 else 1 for d in shape[len(shape) - rank :])
        if roll < 0.45:  # one initializer read by many nodes
            return "shared", ()
        return self.float_input(sub), sub


def _broadcast(a, b):
    return tuple(np.broadcast_shapes(a, b))


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _elementwise(g: _Graph, x, shape):
    kind = g.rng.choice(["Add", "Sub", "Mul", "Div", "Max", "Min", "Where"])
    y, yshape = g.broadcast_partner(shape)
    out_shape = _broadcast(shape, yshape)
    if _size(out_shape) > MAX_SIZE:
        y, out_shape = g.float_input(()), shape
        yshape = ()
    if kind == "Div":
        (pos,) = g.op("Sigmoid", [y])
        (y,) = g.op("Add", [pos, g.const(np.array(0.5))])
        return g.op("Div", [x, y])[0], out_shape
    if kind == "Where":
        (cond,) = g.op("Greater", [x, g.const(np.array(0.1))])
        branches = [x, y] if g.rng.random() < 0.6 else [y, x]
        return g.op("Where", [cond, *branches])[0], out_shape
    operands = [x, y] if g.rng.random() < 0.6 else [y, x]
    return g.op(kind, operands)[0], out_shape


def _unary(g: _Graph, x, shape):
    kind = g.rng.choice(["Tanh", "Sigmoid", "Square", "Neg", "Softplus"])
    if kind == "Square":
        return g.op("Mul", [x, x])[0], shape
    return g.op(kind, [x])[0], shape


def _matmul(g: _Graph, x, shape):
    rng = g.rng
    if len(shape) == 0:
        return None
    k = shape[-1]
    n = int(rng.integers(1, 5))
    if len(shape) == 2 and rng.random() < 0.5:
        trans_a = int(rng.integers(0, 2))
        trans_b = int(rng.integers(0, 2))
        a_shape = shape[::-1] if trans_a else shape
        m, k = a_shape
        w = g.float_input((n, k) if trans_b else (k, n))
        c_shape = [(), (n,), (1, n), (m, 1), (m, n)][int(rng.integers(0, 5))]
        c = g.float_input(c_shape)
        alpha, beta = (float(v) for v in rng.uniform(0.5, 1.5, 2))
        out = g.op("Gemm", [x, w, c], alpha=alpha, beta=beta, transA=trans_a, transB=trans_b)[0]
        return out, (m, n)
    if len(shape) == 1:
        w = g.float_input((k, n))
        return g.op("MatMul", [x, w])[0], (n,)
    batch = shape[:-2]
    w_batch = batch[len(batch) - int(rng.integers(0, len(batch) + 1)) :]
    w_batch = tuple(d if rng.random() < 0.6 else 1 for d in w_batch)
    w = g.float_input((*w_batch, k, n))
    out_shape = (*_broadcast(batch, w_batch), shape[-2], n)
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op("MatMul", [x, w])[0], out_shape


def _reduce(g: _Graph, x, shape):
    rng = g.rng
    if not shape:
        return None
    kind = rng.choice(
        [
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceL2",
            "ReduceL1",
            "ReduceLogSumExp",
            "ReduceProd",
            "ReduceSumSquare",
            "ReduceLogSum",
        ]
    )
    rank = len(shape)
    axes = sorted(rng.choice(rank, int(rng.integers(1, rank + 1)), replace=False).tolist())
    axes = [a - rank if rng.random() < 0.3 else a for a in axes]
    keep = int(rng.integers(0, 2))
    if kind in ("ReduceL2", "ReduceLogSum"):  # away from zero
        (x,) = g.op("Add", [g.op("Mul", [x, x])[0], g.const(np.array(0.5))])
    if kind == "ReduceProd":  # factors in [0.75, 1.25]: a product of 48 stays well scaled
        (scaled,) = g.op("Mul", [g.op("Tanh", [x])[0], g.const(np.array(0.25))])
        (x,) = g.op("Add", [scaled, g.const(np.array(1.0))])
    out_shape = tuple(
        1 if i in [a % rank for a in axes] else d
        for i, d in enumerate(shape)
        if keep or i not in [a % rank for a in axes]
    )
    since = 13 if kind == "ReduceSum" else 18
    return g.axes_op(kind, [x], axes, since, keepdims=keep), out_shape


def _reshape(g: _Graph, x, shape):
    rng = g.rng
    size = _size(shape)
    factors = [d for d in range(1, size + 1) if size % d == 0]
    first = int(rng.choice(factors))
    target = [first, size // first]
    if rng.random() < 0.3:
        target = [size]
    if rng.random() < 0.4:
        target[-1] = -1
    if rng.random() < 0.2 and target[0] == 1:
        target = [*target, 1]
    out_shape = np.empty(shape).reshape(target).shape
    return g.op("Reshape", [x, g.ints(target)])[0], out_shape


def _reshape_like_wrt(g: _Graph, x, shape):
    """Reshape or Expand to a shape read from a differentiated input (the wrt value is then
    also a non-differentiable input)."""
    rng = g.rng
    if g.opset < 14:  # onnx infers no rank for Reshape-13/Expand-13 by a run-time shape
        return None
    target = [n for n in g.wrt if g.feeds[n].size == _size(shape) and g.feeds[n].ndim > 0]
    if target and rng.random() < 0.6:
        name = target[int(rng.integers(0, len(target)))]
        (s,) = g.op("Shape", [name])
        return g.op("Reshape", [x, s])[0], g.feeds[name].shape
    grown = [
        n
        for n in g.wrt
        if g.feeds[n].ndim >= len(shape)
        and _size(g.feeds[n].shape) <= MAX_SIZE
        and _can_broadcast(shape, g.feeds[n].shape)
    ]
    if not grown:
        return None
    name = grown[int(rng.integers(0, len(grown)))]
    (s,) = g.op("Shape", [name])
    return g.op("Expand", [x, s])[0], g.feeds[name].shape


def _can_broadcast(small, big) -> bool:
    try:
        return _broadcast(small, big) == tuple(big)
    except ValueError:
        return False


def _transpose(g: _Graph, x, shape):
    if len(shape) < 2:
        return None
    perm = g.rng.permutation(len(shape)).tolist()
    return g.op("Transpose", [x], perm=perm)[0], tuple(shape[p] for p in perm)


def _slice(g: _Graph, x, shape):
    rng = g.rng
    axes = [a for a, d in enumerate(shape) if d >= 2]
    if not axes:
        return None
    axis = int(rng.choice(axes))
    d = shape[axis]
    if rng.random() < 0.3:
        starts, ends, steps = [d - 1], [-d - 1], [-int(rng.integers(1, 3))]
    else:
        start = int(rng.integers(0, d - 1))
        starts, ends, steps = [start], [int(rng.integers(start + 1, d + 2))], [1]
        if rng.random() < 0.3:
            starts = [start - d]
        if rng.random() < 0.3:
            steps = [2]
    kept = len(range(*slice(starts[0], ends[0], steps[0]).indices(d)))
    out_shape = tuple(kept if i == axis else n for i, n in enumerate(shape))
    ax = axis - len(shape) if rng.random() < 0.3 else axis
    inputs = [x, g.ints(starts), g.ints(ends), g.ints([ax]), g.ints(steps)]
    return g.op("Slice", inputs)[0], out_shape


def _concat(g: _Graph, x, shape):
    if not shape:
        return None
    axis = int(g.rng.integers(0, len(shape)))
    other = g.pick(
        lambda s: len(s) == len(shape) and all(a == b for i, (a, b) in enumerate(zip(s, shape)) if i != axis)
    )
    other_name, other_shape = other
    out_shape = tuple(d + other_shape[i] if i == axis else d for i, d in enumerate(shape))
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op("Concat", [x, other_name], axis=axis - len(shape))[0], out_shape


def _split(g: _Graph, x, shape):
    rng = g.rng
    axes = [a for a, d in enumerate(shape) if d >= 2]
    if not axes:
        return None
    axis = int(rng.choice(axes))
    d = shape[axis]
    first = int(rng.integers(1, d))
    if g.opset >= 18 and rng.random() < 0.4:  # num_outputs: the last part is the smaller one
        first = -(-d // 2)
        outs = g.op("Split", [x], n_out=2, axis=axis - len(shape), num_outputs=2)
    else:
        outs = g.op("Split", [x, g.ints([first, d - first])], n_out=2, axis=axis)
    shapes = [tuple(n if i != axis else p for i, n in enumerate(shape)) for p in (first, d - first)]
    if rng.random() < 0.5:  # both halves live on
        g.add(outs[0], shapes[0])
        return outs[1], shapes[1]
    keep = int(rng.integers(0, 2))
    return outs[keep], shapes[keep]


def _gather(g: _Graph, x, shape):
    rng = g.rng
    if not shape:
        return None
    axis = int(rng.integers(0, len(shape)))
    d = shape[axis]
    ind_shape = [(), (int(rng.integers(1, 4)),), (2, 2)][int(rng.integers(0, 3))]
    indices = rng.integers(-d, d, ind_shape)  # repeats and negative indices
    out_shape = (*shape[:axis], *ind_shape, *shape[axis + 1 :])
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op("Gather", [x, g.ints(indices)], axis=axis)[0], out_shape


def _expand(g: _Graph, x, shape):
    rng = g.rng
    lead = (int(rng.integers(1, 4)),) if rng.random() < 0.5 else ()
    target = (*lead, *(int(rng.integers(1, 4)) if d == 1 else (1 if rng.random() < 0.2 else d) for d in shape))
    out_shape = _broadcast(shape, target)
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op("Expand", [x, g.ints(target)])[0], out_shape


def _tile(g: _Graph, x, shape):
    if not shape:
        return None
    repeats = [int(g.rng.integers(1, 3)) for _ in shape]
    out_shape = tuple(d * r for d, r in zip(shape, repeats))
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op("Tile", [x, g.ints(repeats)])[0], out_shape


def _pad(g: _Graph, x, shape):
    rng = g.rng
    if not shape:
        return None
    # before opset 16, reflect/edge gradients need static dims (no ScatterElements add)
    modes = ["constant"] if g.opset < 16 else ["constant", "reflect", "edge"]
    modes += ["wrap"] if g.opset >= 19 else []
    mode = str(rng.choice(modes))
    rank = len(shape)
    limit = [max(0, d - 1) if mode == "reflect" else 2 for d in shape]
    pads = [int(rng.integers(0, lim + 1)) for lim in limit * 2]
    out_shape = tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(shape))
    if _size(out_shape) > MAX_SIZE or min(out_shape) < 1:
        return None
    axes = None
    if g.opset >= 18 and rng.random() < 0.4:  # only some axes, maybe negative, in any order
        axes = rng.permutation(rank)[: int(rng.integers(1, rank + 1))].tolist()
        for a in range(rank):
            if a not in axes:
                pads[a] = pads[a + rank] = 0
        out_shape = tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(shape))
        pads = [pads[a] for a in axes] + [pads[a + rank] for a in axes]
        axes = [a - rank if rng.random() < 0.3 else a for a in axes]
    inputs = [x, g.ints(pads), g.const(np.array(0.25)) if mode == "constant" else ""]
    if axes is not None:
        inputs.append(g.ints(axes))
    while inputs[-1] == "":
        inputs.pop()
    return g.op("Pad", inputs, mode=mode)[0], out_shape


def _softmax(g: _Graph, x, shape):
    if not shape:
        return None
    axis = int(g.rng.integers(-len(shape), len(shape)))
    kind = g.rng.choice(["Softmax", "LogSoftmax"])
    return g.op(kind, [x], axis=axis)[0], shape


def _layer_norm(g: _Graph, x, shape):
    rng = g.rng
    if not shape or shape[-1] < 2 or g.opset < 17:
        return None
    axis = int(rng.integers(-len(shape), len(shape)))
    norm_shape = shape[axis:]
    if _size(norm_shape) < 2:
        return None
    scale_shape = norm_shape[int(rng.integers(0, len(norm_shape) + 1)) :]
    scale = g.float_input(scale_shape, low=0.5, high=1.5)
    # Noise along the normalized dims: a constant row (e.g. from Expand) has zero variance,
    # where float32 rounding is amplified by 1/sqrt(epsilon).
    (x,) = g.op("Add", [x, g.float_input(norm_shape, differentiate=False)])
    inputs = [x, scale]
    if rng.random() < 0.6:
        inputs.append(g.float_input(scale_shape))
    return g.op("LayerNormalization", inputs, axis=axis)[0], shape


def _squeeze(g: _Graph, x, shape):
    rng = g.rng
    if rng.random() < 0.5 or 1 not in shape:
        axis = int(rng.integers(0, len(shape) + 1))
        out_shape = (*shape[:axis], 1, *shape[axis:])
        ax = axis - len(out_shape) if rng.random() < 0.3 else axis
        return g.axes_op("Unsqueeze", [x], [ax], 13), out_shape
    axis = shape.index(1)
    out_shape = shape[:axis] + shape[axis + 1 :]
    return g.axes_op("Squeeze", [x], [axis], 13), out_shape


def _flatten(g: _Graph, x, shape):
    axis = int(g.rng.integers(0, len(shape) + 1))
    out_shape = (_size(shape[:axis]), _size(shape[axis:]))
    return g.op("Flatten", [x], axis=axis)[0], out_shape


def _variadic(g: _Graph, x, shape):
    """Sum/Mean/Max/Min of three operands, one of them repeated or broadcast."""
    kind = str(g.rng.choice(["Sum", "Mean", "Max", "Min"]))
    y, yshape = g.broadcast_partner(shape)
    third = x if kind in ("Sum", "Mean") else g.op("Sin", [x])[0]
    out_shape = _broadcast(shape, yshape)
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op(kind, [x, y, third])[0], out_shape


def _smooth(g: _Graph, x, shape):
    """Ops with a restricted domain, fed a positive value."""
    kind = str(g.rng.choice(["Sqrt", "Log", "Pow", "Exp", "Reciprocal", "Clip", "LeakyRelu"]))
    (pos,) = g.op("Add", [g.op("Mul", [x, x])[0], g.const(np.array(0.5))])
    if kind == "Pow":
        exponent, eshape = g.broadcast_partner(shape)
        if _size(_broadcast(shape, eshape)) > MAX_SIZE or exponent == x:
            exponent, eshape = g.const(np.array(1.5)), ()
        return g.op("Pow", [pos, exponent])[0], _broadcast(shape, eshape)
    if kind == "Exp":
        return g.op("Exp", [g.op("Tanh", [x])[0]])[0], shape
    if kind == "Clip":
        return g.op("Clip", [x, g.const(np.array(-0.4)), g.const(np.array(0.6))])[0], shape
    if kind == "LeakyRelu":
        return g.op("LeakyRelu", [x], alpha=0.2)[0], shape
    return g.op(kind, [pos])[0], shape


def _picking(g: _Graph, x, shape):
    """CumSum, GatherElements, TopK and Trilu: ops that route or accumulate cells."""
    rng = g.rng
    if not shape:
        return None
    axis = int(rng.integers(-len(shape), len(shape)))
    d = shape[axis]
    kinds = ["CumSum", "TopK"]
    kinds += ["Trilu"] if g.opset >= 14 else []
    # before opset 16 the GatherElements gradient needs static shapes (no ScatterElements add)
    kinds += ["GatherElements"] if g.opset >= 16 else []
    kind = str(rng.choice(kinds))
    if kind == "CumSum":
        flags = {"exclusive": int(rng.integers(0, 2)), "reverse": int(rng.integers(0, 2))}
        return g.op("CumSum", [x, g.const(np.array(axis, np.int64))], **flags)[0], shape
    if kind == "GatherElements":
        out_shape = tuple(int(rng.integers(1, 4)) if i == axis % len(shape) else n for i, n in enumerate(shape))
        indices = rng.integers(-d, d, out_shape)
        # onnx.reference's GatherElements mishandles a negative axis
        return g.op("GatherElements", [x, g.ints(indices)], axis=axis % len(shape))[0], out_shape
    if kind == "TopK":
        k = int(rng.integers(1, d + 1))
        out_shape = tuple(k if i == axis % len(shape) else n for i, n in enumerate(shape))
        values, _ = g.op("TopK", [x, g.ints([k])], n_out=2, axis=axis, largest=int(rng.integers(0, 2)))
        return values, out_shape
    if len(shape) < 2:
        return None
    inputs = [x, g.const(np.array(int(rng.integers(-1, 2)), np.int64))]
    return g.op("Trilu", inputs, upper=int(rng.integers(0, 2)))[0], shape


def _einsum(g: _Graph, x, shape):
    """Einsum as a batched contraction, a transpose-and-reduce, or an outer product."""
    rng = g.rng
    letters = "abcdefgh"[: len(shape)]
    if not letters:
        return None
    kind = int(rng.integers(0, 3))
    if kind == 0:  # contract the last axis with a new operand
        n = int(rng.integers(1, 4))
        w = g.float_input((shape[-1], n))
        out_shape = (*shape[:-1], n)
        return g.op("Einsum", [x, w], equation=f"{letters},{letters[-1]}z->{letters[:-1]}z")[0], out_shape
    if kind == 1:  # keep a permuted subset of the axes
        kept = [c for c in letters if rng.random() < 0.6]
        rng.shuffle(kept)
        out_shape = tuple(shape[letters.index(c)] for c in kept)
        return g.op("Einsum", [x], equation=f"{letters}->{''.join(kept)}")[0], out_shape
    other = g.pick(lambda s: len(s) == 1)
    if other is None:
        return None
    other, oshape = other
    out_shape = (*shape, oshape[0])
    if _size(out_shape) > MAX_SIZE:
        return None
    return g.op("Einsum", [x, other], equation=f"{letters},z->{letters}z")[0], out_shape


STEPS = (
    _picking,
    _einsum,
    _squeeze,
    _flatten,
    _variadic,
    _smooth,
    _elementwise,
    _elementwise,
    _unary,
    _matmul,
    _reduce,
    _reshape,
    _reshape_like_wrt,
    _transpose,
    _slice,
    _concat,
    _split,
    _gather,
    _expand,
    _tile,
    _pad,
    _softmax,
    _layer_norm,
)


def random_graph(seed: int, steps: int = 6, symbolic: bool | None = None) -> tuple[onnx.ModelProto, dict, list[str]]:
    """A random float32 model (opset 13 to 21), float64 feeds for its inputs, and the inputs to
    differentiate (all float inputs). ``symbolic``: name input dims (about half of them) in
    every graph (True), none (False) or in about a third of the graphs (None)."""
    rng = np.random.default_rng(seed)
    opset = int(rng.choice([13, 17, 18, 18, 21]))
    symbolic = rng.random() < 0.3 if symbolic is None else symbolic
    g = _Graph(rng, symbolic=symbolic, opset=opset)
    rank = int(rng.integers(1, 4))
    shape = tuple(int(rng.integers(1, 5)) for _ in range(rank))
    g.add(g.float_input(shape), shape)
    g.inits.append(numpy_helper.from_array(np.array(0.75, dtype=np.float32), "shared"))
    done = 0
    while done < steps:
        name, shape = g.pick()
        step = STEPS[int(rng.integers(0, len(STEPS)))]
        made = step(g, name, shape)
        if made is None:
            continue
        g.add(*made)
        done += 1
    used = {i for n in g.nodes for i in n.input}
    finals = [g.pool[-1]] + [v for v in g.pool[:-1] if v[0] not in used and rng.random() < 0.5]
    if rng.random() < 0.4:  # an output that other nodes also read: both gradients add up
        finals += [v for v in g.pool[:-1] if v[0] in used and v not in finals][-1:]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n, _ in finals]
    inits = [i for i in g.inits if i.name in used]
    graph = helper.make_graph(g.nodes, f"fuzz{seed}", g.inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    wrt = [n for n in g.wrt if n in used]
    return model, dict(g.feeds), wrt
