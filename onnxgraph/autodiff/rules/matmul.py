"""Gradient rules of linear algebra: MatMul, Gemm, Einsum."""

from __future__ import annotations

from collections.abc import Sequence

from onnxgraph.autodiff.builder import GradBuilder, known_shape, rank_of, upstream
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.node import Node
from onnxgraph.value import Value


def _swap_last(b, x, rank):
    return b.Transpose(x, perm=[*range(rank - 2), rank - 1, rank - 2])


def _broadcast_dims(a, c):
    """numpy broadcasting of two batch shapes (None when it cannot be told before run time)."""
    if a is None or c is None:
        return None
    n = max(len(a), len(c))
    a, c = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(c)) + tuple(c)
    out = []
    for p, q in zip(a, c):
        if p == q or q == 1:
            out.append(p)
        elif p == 1:
            out.append(q)
        else:
            return None
    return tuple(out)


def _as_matrix(b, x, axis):
    """A 1-D MatMul operand promoted to 2-D the way MatMul does it (typed with its new shape)."""
    shape = x.shape
    out = b.unsqueeze(x, [axis])
    new_shape = None if shape is None else ((1, *shape) if axis == 0 else (*shape, 1))
    return b.typed(out, x, new_shape)


@register("MatMul")
def matmul(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    a, w, g = node.input(0), node.input(1), upstream(grads)
    ra, rw = rank_of(a), rank_of(w)
    a2 = _as_matrix(b, a, 0) if ra == 1 else a
    w2 = _as_matrix(b, w, 1) if rw == 1 else w
    if rw == 1:
        g = b.unsqueeze(g, [-1])
    if ra == 1:
        g = b.unsqueeze(g, [-2])
    batch = _broadcast_dims(None if a2.shape is None else a2.shape[:-2], None if w2.shape is None else w2.shape[:-2])
    da = dw = None
    if b.wants(a):
        da = b.MatMul(g, _swap_last(b, w2, max(rank_of(w2), 2)))
        da = b.unbroadcast(da, a2, None if batch is None else (*batch, *known_shape(a2)[-2:]))
        da = b.reshape_like(da, a) if ra == 1 else da
    if b.wants(w) and rw == 2 and ra > 2:  # a shared weight: one GEMM over the flattened batch
        rows = b.Reshape(a, b.Concat(b.ints([-1]), b.axis_size(w, 0), axis=0))
        cols = b.Reshape(g, b.Concat(b.ints([-1]), b.axis_size(w, 1), axis=0))
        dw = b.Gemm(rows, cols, transA=1)
    elif b.wants(w):
        dw = b.MatMul(_swap_last(b, a2, rank_of(a2)), g)
        dw = b.unbroadcast(dw, w2, None if batch is None else (*batch, *known_shape(w2)[-2:]))
        dw = b.reshape_like(dw, w) if rw == 1 else dw
    return [da, dw]


@register("Gemm", broadcast=(2,))
def gemm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    a, w = node.input(0), node.input(1)
    c = node.inputs[2] if len(node.inputs) > 2 else None
    g = upstream(grads)
    alpha, beta = node.attr("alpha", 1.0), node.attr("beta", 1.0)
    ta, tb = node.attr("transA", 0), node.attr("transB", 0)
    da = dw = dc = None
    if b.wants(a):
        da = b.Gemm(w, g, alpha=alpha, transA=tb, transB=1) if ta else b.Gemm(g, w, alpha=alpha, transB=1 - tb)
    if b.wants(w):
        dw = b.Gemm(g, a, alpha=alpha, transA=1, transB=ta) if tb else b.Gemm(a, g, alpha=alpha, transA=1 - ta)
    if b.wants(c):
        dc = g if beta == 1.0 else b.Mul(g, b.scalar(beta, g))
    return [da, dw, dc]


def _terms(equation: str) -> tuple[list[list[str]], list[str]]:
    """Parse an einsum equation into per-operand token lists ("..." is one token) and the output."""
    lhs, arrow, rhs = equation.replace(" ", "").partition("->")
    operands = [_tokens(t) for t in lhs.split(",")]
    if not arrow:
        counts: dict[str, int] = {}
        for t in operands:
            for ch in t:
                counts[ch] = counts.get(ch, 0) + 1
        out = (["..."] if "..." in counts else []) + sorted(c for c, n in counts.items() if n == 1 and c != "...")
    else:
        out = _tokens(rhs)
    return operands, out


def _tokens(term: str) -> list[str]:
    head, dots, tail = term.partition("...")
    return [*head, *(["..."] if dots else []), *tail]


@register("Einsum")
def einsum(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    operands, out = _terms(node.attr("equation"))
    g = upstream(grads)
    result: list[Value | None] = []
    for i, x in enumerate(node.inputs):
        if not b.wants(x):
            result.append(None)
            continue
        term = operands[i]
        if len(set(term)) != len(term):
            raise GradientError(f"Einsum gradient: repeated index in operand '{''.join(term)}' is not supported")
        others = [t for j, t in enumerate(operands) if j != i]
        available = set(out).union(*others) if others else set(out)
        kept = [t for t in term if t in available]
        summed_batch = "..." not in term and any("..." in t for t in [out, *others])
        kept = ["..."] + kept if summed_batch else kept
        equation = ",".join("".join(t) for t in [out, *others]) + "->" + "".join(kept)
        gx = b.Einsum(g, *[v for j, v in enumerate(node.inputs) if j != i], equation=equation)
        dropped = [k for k, t in enumerate(term) if t not in available]
        if summed_batch:  # ONNX einsum cannot sum an ellipsis away: do it with ReduceSum
            batch_rank = rank_of(node.outputs[0]) - (len(out) - 1)
            gx = b.sum_to(gx, list(range(batch_rank)), keepdims=False)
        if dropped:
            gx = b.expand_like(b.unsqueeze(gx, dropped), x)
        elif "..." in term:
            gx = b.unbroadcast(gx, x, None)
        result.append(gx)
    return result
