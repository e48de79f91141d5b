"""``shapes``: shape simplification with symbolic dimensions kept symbolic.

onnx shape inference (with data propagation) gives every value's dimensions; this pass then
tracks the *contents* of small integer shape tensors element by element, where an element is a
known integer or a symbol (a named dimension such as ``batch``, an unknown dimension of one value,
or an expression of symbols). Nothing is ever evaluated at the size the model was exported with.

Rewrites:
    1. ``shape_of_static``: Shape or Size of a value whose dimensions are all known becomes a constant.
    2. ``known_value``: Gather, Slice, Concat, Unsqueeze, Squeeze, Cast, arithmetic... over shape
       tensors whose elements all turn out to be known integers become constants.
    3. ``reshape_target``: a Reshape whose target shape mixes known sizes with symbols equal to the
       data's own dimensions gets a constant target with 0 ("keep this dimension") in their
       place, and -1 for at most one remaining symbol; the Shape->Gather->Concat chain then dies.
    4. ``transpose_round_trip``: ``Reshape(Transpose(Reshape(x, [-1] + rest), p), s)`` where the first
       Reshape merges x's leading dims, ``p`` keeps axis 0 in place and ``s`` splits them again (the
       3-D transpose of attention's keys written for a batched MatMul) is one ``Transpose(x)``; the
       sizes are compared element by element, symbols included.
    5. ``shared_symbolic``: a shape value whose elements (symbols included) and type equal those of
       an earlier value of the same graph is replaced by it: the Shape->Gather->Unsqueeze->Concat
       chains an exporter writes again in every layer, on values of the same symbolic shape, are
       computed once.
    6. ``gemm_round_trip``: ``Reshape(Gemm(Reshape(x, [-1, K]), W, C), x.shape[:-1] + [N])`` (a 3-D
       or higher x flattened for a Gemm and unflattened after it: GPT-2's Conv1D, a Linear as the
       TorchScript exporter writes ``addmm``) becomes ``MatMul(x, W) + C``; ``transA`` 0, ``alpha``
       and ``beta`` 1, ``transB`` only with a constant W read by nothing else (it is transposed), C a
       vector or a row.
    7. ``reshape_to_own_shape``: a Reshape whose target is, element by element (symbols included),
       its data's own shape (one -1 allowed) is removed, ``allowzero`` or not (the dynamo exporter's
       ``view(-1, x.size(1))`` of a ``[batch, seq]`` input).
    8. ``equal_dims``: Equal of shape elements and constants, where every element is known or a
       dimension compared with a negative number (``Equal(shape, -1)`` before an Expand: a dimension
       is never -1), becomes a constant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import onnx

from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.utils import (
    constant_array,
    is_standard,
    new_constant,
    remove_if_unused,
    replace_with_constant,
    scopes,
)
from onnxgraph.shape_inference import inferred_types
from onnxgraph.value import Value

_INT_TYPES = frozenset({onnx.TensorProto.INT64, onnx.TensorProto.INT32})


@dataclass(frozen=True)
class Partial:
    """The contents of a 0-D or 1-D integer tensor: ints where known, hashable symbols elsewhere."""

    elems: tuple[Hashable, ...]
    scalar: bool = False

    @property
    def known(self) -> bool:
        return all(isinstance(e, int) for e in self.elems)


class ShapeSimplification(Pass):
    """Fold shape computations whose results are known, keeping symbolic dims symbolic."""

    name = "shapes"
    rewrites = (
        "shape_of_static",
        "known_value",
        "reshape_target",
        "transpose_round_trip",
        "shared_symbolic",
        "gemm_round_trip",
        "reshape_to_own_shape",
        "equal_dims",
    )

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        inferred = inferred_types(model, forget_value_info=True)
        for graph, in_function in scopes(model):
            self._in_function = in_function
            self._types = {} if in_function else inferred  # function bodies have their own names
            partials: dict[Value, Partial] = {}
            seen: dict[tuple[Partial, int], Value] = {}  # shape values by contents and element type
            for node in graph:
                if not is_standard(node):
                    continue
                if node.op_type == "Reshape" and self._try_reshape_to_own_shape(node, partials):
                    stats["reshape_to_own_shape"] += 1
                    continue
                if node.op_type == "Reshape" and self._try_transpose_round_trip(node, partials):
                    stats["transpose_round_trip"] += 1
                    continue
                if node.op_type == "Reshape" and self._try_gemm_round_trip(node, partials, in_function):
                    stats["gemm_round_trip"] += 1
                    continue
                if node.op_type == "Reshape" and self._try_reshape_target(node, partials, in_function):
                    stats["reshape_target"] += 1
                    continue
                partial = self._propagate(node, partials)
                if partial is None or node.outputs[0].is_graph_output() or node.op_type == "Constant":
                    continue
                if not partial.known:
                    if self._try_shared_symbolic(node, partial, seen):
                        stats["shared_symbolic"] += 1
                    continue
                case = {"Shape": "shape_of_static", "Size": "shape_of_static", "Equal": "equal_dims"}.get(
                    node.op_type, "known_value"
                )
                if self._try_fold(node, partial, case, in_function):
                    stats[case] += 1
        self._types = {}
        return stats

    # -- value tracking ---------------------------------------------------------------------------
    def _inferred(self, value: Value) -> onnx.TypeProto | None:
        """``value``'s type as inference on the whole model gave it (None: unnamed or not inferred)."""
        return None if value.name is None else self._types.get(value.name)

    def _dims(self, value: Value) -> list[Hashable] | None:
        """The dimensions of ``value``: ints, dim names, or a symbol unique to (value, axis)."""
        # Outside functions only inferred types count: a file's value_info may record the sizes
        # seen at export, and trusting those would fix dynamic dimensions.
        type_proto = value.type if self._in_function else self._inferred(value)
        if type_proto is None or not type_proto.HasField("tensor_type"):
            return None
        tensor = type_proto.tensor_type
        if not tensor.HasField("shape"):
            return None
        dims: list[Hashable] = []
        for i, d in enumerate(tensor.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param"):
                dims.append(("dim", d.dim_param))
            else:
                dims.append(("unknown", id(value), i))
        return dims

    def _partial(self, value: Value | None, partials: dict[Value, Partial]) -> Partial | None:
        if value is None:
            return None
        if value in partials:
            return partials[value]
        array = constant_array(value)
        if array is None or array.dtype.kind not in "iu" or array.ndim > 1 or array.size > 64:
            return None
        return Partial(tuple(int(x) for x in array.reshape(-1)), scalar=array.ndim == 0)

    def _propagate(self, node: Node, partials: dict[Value, Partial]) -> Partial | None:
        rule = _RULES.get(node.op_type)
        if rule is None or len(node.outputs) != 1:
            return None
        try:
            partial = rule(self, node, partials)
        except (IndexError, ValueError, TypeError):
            return None
        if partial is not None:
            partials[node.outputs[0]] = partial
        return partial

    # -- rewrites ---------------------------------------------------------------------------------
    def _try_fold(self, node: Node, partial: Partial, case: str, in_function: bool) -> bool:
        if not self.allows(case):
            return False
        out = node.outputs[0]
        elem_type = self._elem_type(out)
        dtypes: dict[int, type] = {onnx.TensorProto.INT32: np.int32, onnx.TensorProto.BOOL: np.bool_}
        dtype = dtypes.get(elem_type, np.int64)
        array: np.ndarray = np.array(partial.elems, dtype=dtype)
        replace_with_constant(out, array.reshape(()) if partial.scalar else array, in_function=in_function)
        return True

    def _elem_type(self, value: Value) -> int:
        """``value``'s element type (0 when unknown)."""
        return (self._inferred(value) or value.type or onnx.TypeProto()).tensor_type.elem_type

    def _try_shared_symbolic(self, node: Node, partial: Partial, seen: dict[tuple[Partial, int], Value]) -> bool:
        out = node.outputs[0]
        elem_type = self._elem_type(out)
        if not elem_type:
            return False
        earlier = seen.setdefault((partial, elem_type), out)
        if earlier is out or not self.allows("shared_symbolic"):
            return False
        out.replace_all_uses_with(earlier)  # the node is left to dce
        return True

    def _try_reshape_target(self, node: Node, partials: dict[Value, Partial], in_function: bool) -> bool:
        if not self.allows("reshape_target") or node.attr("allowzero", 0) or len(node.inputs) < 2:
            return False
        target = self._partial(node.inputs[1], partials)
        dims = self._dims(node.input(0))
        if target is None or target.known or dims is None or 0 in target.elems:
            return False
        shape, unresolved = [], 0
        for i, elem in enumerate(target.elems):
            if isinstance(elem, int):
                shape.append(elem)
            elif i < len(dims) and dims[i] == elem:
                shape.append(0)
            else:
                shape.append(-1)
                unresolved += 1
        if unresolved > 1 or (unresolved and -1 in target.elems):
            return False
        const = new_constant(
            node.graph, np.array(shape, dtype=np.int64), in_function=in_function, before=node, base_name="reshape_shape"
        )
        node.replace_input_with(1, const)  # the old Shape->Gather->Concat chain is left to dce
        return True

    def _try_transpose_round_trip(self, node: Node, partials: dict[Value, Partial]) -> bool:
        if not self.allows("transpose_round_trip") or len(node.inputs) < 2:
            return False
        transpose = _sole_producer(node.inputs[0], "Transpose")
        first = _sole_producer(transpose.inputs[0], "Reshape") if transpose is not None else None
        if transpose is None or first is None or len(first.inputs) < 2:
            return False
        x, perm = first.input(0), transpose.attr("perm")
        dims = self._dims(x)
        merged = self._targets(first, dims, partials)
        if dims is None or merged is None or perm is None or not perm or perm[0] != 0:
            return False
        keep = len(dims) - len(merged) + 1  # leading dims of x merged into the first axis
        if keep < 1 or merged[1:] != dims[keep:] or not _is_product(merged[0], dims[:keep]):
            return False
        middle = [("merged",), *dims[keep:]]
        moved = [middle[p] for p in perm]
        split = self._targets(node, moved, partials)
        expected = dims[:keep] + moved[1:]
        if split is None or not _same_sizes(split, expected):
            return False
        new_perm = list(range(keep)) + [keep - 1 + p for p in perm[1:]]
        replacement = Node("", "Transpose", [x], {"perm": new_perm}, name=node.name)
        assert node.graph is not None
        node.graph.insert_before(node, replacement)
        out = node.outputs[0]
        replacement.outputs[0].type = out.type
        out.replace_all_uses_with(replacement.outputs[0], replace_graph_outputs=True)
        for dead in (node, transpose, first):
            remove_if_unused(dead)
        return True

    def _try_reshape_to_own_shape(self, node: Node, partials: dict[Value, Partial]) -> bool:
        if not self.allows("reshape_to_own_shape") or len(node.inputs) < 2 or node.outputs[0].is_graph_output():
            return False
        x = node.input(0)
        dims = self._dims(x)
        target = self._targets(node, dims, partials)
        if dims is None or target is None or not _same_sizes(target, dims):
            return False
        node.outputs[0].replace_all_uses_with(x)
        remove_if_unused(node)
        return True

    def _try_gemm_round_trip(self, node: Node, partials: dict[Value, Partial], in_function: bool) -> bool:
        if not self.allows("gemm_round_trip") or len(node.inputs) < 2:
            return False
        gemm = _sole_producer(node.inputs[0], "Gemm")
        first = _sole_producer(gemm.inputs[0], "Reshape") if gemm is not None else None
        if gemm is None or first is None or len(first.inputs) < 2 or gemm.attr("transA", 0):
            return False
        if gemm.attr("alpha", 1.0) != 1.0 or gemm.attr("beta", 1.0) != 1.0:
            return False
        weight = _gemm_weight(gemm)
        x = first.input(0)
        dims = self._dims(x)
        flat = self._targets(first, dims, partials)
        if weight is None or dims is None or flat is None or len(dims) < 2 or len(flat) != 2:
            return False
        if flat[1] != dims[-1] or not _is_product(flat[0], dims[:-1]):
            return False
        n = weight.shape[1] if isinstance(weight, np.ndarray) else weight[1]
        expected = [*dims[:-1], n]
        split = self._targets(node, [("merged",), n], partials)
        if split is None or not _same_sizes(split, expected):
            return False
        graph = node.graph
        assert graph is not None
        w = gemm.inputs[1]
        if isinstance(weight, np.ndarray):  # transB: a private constant, stored transposed
            w = new_constant(graph, np.ascontiguousarray(weight), in_function=in_function, before=node)
        product = Node("", "MatMul", [x, w], name=gemm.name)
        graph.insert_before(node, product)
        result = product.outputs[0]
        result.type = node.outputs[0].type  # C is a vector or a row: the product has the result's shape
        bias = gemm.inputs[2] if len(gemm.inputs) > 2 else None
        if bias is not None:
            add = Node("", "Add", [result, bias])
            graph.insert_before(node, add)
            result = add.outputs[0]
        out = node.outputs[0]
        result.type = out.type
        out.replace_all_uses_with(result, replace_graph_outputs=True)
        for dead in (node, gemm, first):
            remove_if_unused(dead)
        return True

    def _targets(self, reshape: Node, dims: list[Hashable] | None, partials: dict[Value, Partial]) -> list | None:
        """A Reshape's target elements, 0 ("copy") replaced by ``dims``' element (its data's dims)."""
        target = self._partial(reshape.inputs[1], partials)
        if target is None or target.scalar or dims is None:
            return None
        elems = list(target.elems)
        if not reshape.attr("allowzero", 0):
            for i, e in enumerate(elems):
                if e == 0:
                    if i >= len(dims) or dims[i] == ("merged",):
                        return None
                    elems[i] = dims[i]
        return elems


def _sole_producer(value: Value | None, op_type: str) -> Node | None:
    """The standard-domain ``op_type`` node producing ``value`` when ``value`` has no other reader."""
    node = value.producer() if value is not None else None
    if node is None or node.op_type != op_type or not is_standard(node) or value is None:
        return None
    if len(value.uses()) != 1 or value.is_graph_output():
        return None
    return node


def _gemm_weight(gemm: Node) -> np.ndarray | tuple[int, int] | None:
    """A Gemm's B as ``(K, N)`` when it needs no transposing; with ``transB``, the transposed data of
    a constant B that nothing else reads. None when the round trip cannot become a MatMul: B of
    unknown size, a transposed B that is not such a constant, or a C that is not a vector or a row."""
    if len(gemm.inputs) < 2:
        return None
    b = gemm.inputs[1]
    c = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    shape = _static_shape(b)
    if b is None or shape is None or len(shape) != 2:
        return None
    rows, cols = shape
    if not isinstance(rows, int) or not isinstance(cols, int):
        return None
    k, n = (cols, rows) if gemm.attr("transB", 0) else (rows, cols)
    c_shape = _static_shape(c) if c is not None else ()
    if c_shape is None or len(c_shape) > 2 or (len(c_shape) == 2 and c_shape[0] != 1):
        return None
    if not gemm.attr("transB", 0):
        return (k, n)
    data = constant_array(b)
    if data is None or len(b.uses()) != 1 or b.is_graph_input() or b.is_graph_output():
        return None
    return data.T


def _same_sizes(target: list[Hashable], dims: list[Hashable]) -> bool:
    """Whether a Reshape to ``target`` of a tensor with as many elements as one of ``dims`` gives ``dims``.

    True when they agree element by element except for at most one position, where the target has -1
    or either side a symbol: the element count fixes that one (for tensors that are not empty, where
    a -1 is ambiguous anyway). Symbols that onnx shape inference could not tie together (``Range``'s
    length, a broadcast of ``sequence`` with an unknown dim) are so matched.
    """
    if len(target) != len(dims):
        return False
    differ = [(t, d) for t, d in zip(target, dims, strict=True) if t != d]
    if not differ:
        return True
    if len(differ) > 1 or target.count(-1) > 1:
        return False
    t, d = differ[0]
    return t == -1 or not isinstance(t, int) or not isinstance(d, int)


def _static_shape(value: Value | None) -> tuple | None:
    """A value's shape from its type, or from its data when it is a constant without one."""
    if value is None:
        return None
    if value.shape is not None:
        return value.shape
    data = constant_array(value)
    return None if data is None else data.shape


def _is_product(elem: Hashable, dims: list[Hashable]) -> bool:
    """Whether a Reshape target element stands for the product of ``dims`` (-1 does, given the rest)."""
    if elem == -1 or (len(dims) == 1 and elem == dims[0]):
        return True
    sizes = [d for d in dims if isinstance(d, int)]
    return len(sizes) == len(dims) and elem == int(np.prod(sizes, dtype=np.int64))


# -- propagation rules --------------------------------------------------------------------------------
def _shape(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    dims = p._dims(node.input(0))
    if dims is None:
        return None
    start, end = node.attr("start", 0), node.attr("end", None)
    return Partial(tuple(dims[start:end]))


def _size(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    dims = p._dims(node.input(0))
    if dims is None:
        return None
    known = [d for d in dims if isinstance(d, int)]
    if len(known) != len(dims):
        return None
    return Partial((int(np.prod(known, dtype=np.int64)),), scalar=True)


def _passthrough(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    if node.op_type == "Cast" and node.attr("to") not in _INT_TYPES:
        return None
    return p._partial(node.inputs[0], partials)


def _gather(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    data = p._partial(node.inputs[0], partials)
    indices = constant_array(node.inputs[1])
    if data is None or data.scalar or indices is None or node.attr("axis", 0) != 0:
        return None
    picked = tuple(data.elems[int(i)] for i in indices.reshape(-1))
    return Partial(picked, scalar=indices.ndim == 0)


def _unsqueeze(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    data = p._partial(node.inputs[0], partials)
    axes = node.attr("axes")
    if axes is None and len(node.inputs) > 1:
        array = constant_array(node.inputs[1])
        axes = None if array is None else array.reshape(-1).tolist()
    if data is None or not data.scalar or axes is None or list(axes) not in ([0], [-1]):
        return None
    return Partial(data.elems)


def _squeeze(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    data = p._partial(node.inputs[0], partials)
    if data is None or data.scalar or len(data.elems) != 1:
        return None
    return Partial(data.elems, scalar=True)


def _concat(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    if node.attr("axis") not in (0, -1):
        return None
    parts = [p._partial(v, partials) for v in node.inputs]
    vectors = [part for part in parts if part is not None and not part.scalar]
    if len(vectors) != len(parts):
        return None
    return Partial(tuple(e for part in vectors for e in part.elems))


def _slice(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    data = p._partial(node.inputs[0], partials)
    if data is None or data.scalar or node.attr("starts") is not None:
        return None
    args = [constant_array(v) if v is not None else None for v in node.inputs[1:5]]
    if args[0] is None or args[1] is None or any(a is None for a, v in zip(args, node.inputs[1:5]) if v is not None):
        return None
    if args[0].size != 1 or (len(args) > 2 and args[2] is not None and int(args[2].reshape(-1)[0]) not in (0, -1)):
        return None
    step = int(args[3].reshape(-1)[0]) if len(args) > 3 and args[3] is not None else 1
    if step == 0:
        return None
    return Partial(data.elems[int(args[0].reshape(-1)[0]) : int(args[1].reshape(-1)[0]) : step])


def _arith(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    a, b = (p._partial(v, partials) for v in node.inputs[:2])
    if a is None or b is None:
        return None
    if len(a.elems) != len(b.elems) and 1 not in (len(a.elems), len(b.elems)):
        return None
    n = max(len(a.elems), len(b.elems))
    xs = a.elems * n if len(a.elems) == 1 else a.elems
    ys = b.elems * n if len(b.elems) == 1 else b.elems
    return Partial(tuple(_combine(node.op_type, x, y) for x, y in zip(xs, ys)), scalar=a.scalar and b.scalar)


def _equal(p: ShapeSimplification, node: Node, partials) -> Partial | None:
    a, b = (p._partial(v, partials) for v in node.inputs[:2])
    if a is None or b is None or (len(a.elems) != len(b.elems) and 1 not in (len(a.elems), len(b.elems))):
        return None
    n = max(len(a.elems), len(b.elems))
    pairs = zip(a.elems * n if len(a.elems) == 1 else a.elems, b.elems * n if len(b.elems) == 1 else b.elems)
    result: list[Hashable] = []
    for x, y in pairs:
        if isinstance(x, int) and isinstance(y, int):
            result.append(int(x == y))
        elif _is_dimension(x) and isinstance(y, int) and y < 0 or _is_dimension(y) and isinstance(x, int) and x < 0:
            result.append(0)
        else:
            result.append(("Equal", x, y))
    return Partial(tuple(result), scalar=a.scalar and b.scalar)


def _is_dimension(elem: Hashable) -> bool:
    """Whether a symbol stands for a tensor's dimension (never negative), not an expression of them."""
    return isinstance(elem, tuple) and elem[0] in ("dim", "unknown")


def _combine(op: str, x: Hashable, y: Hashable) -> Hashable:
    if isinstance(x, int) and isinstance(y, int):
        if op == "Add":
            return x + y
        if op == "Sub":
            return x - y
        if op == "Mul":
            return x * y
        if y != 0:
            q = abs(x) // abs(y)
            return q if (x >= 0) == (y > 0) else -q
        return ("div0", x)
    if op == "Mul" and (x == 1 or y == 1):
        return y if x == 1 else x
    if op in ("Add", "Sub") and y == 0:
        return x
    if op == "Div" and y == 1:
        return x
    return (op, x, y)


_RULES = {
    "Shape": _shape,
    "Size": _size,
    "Identity": _passthrough,
    "Cast": _passthrough,
    "Constant": lambda p, node, partials: p._partial(node.outputs[0], partials),
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Add": _arith,
    "Sub": _arith,
    "Mul": _arith,
    "Div": _arith,
    "Equal": _equal,
}


def symbolic_elements(value: Value, *, depth: int = 16) -> tuple[Hashable, ...] | None:
    """The elements of a small integer shape tensor, traced back through the ops this pass tracks.

    Each element is a known int or a symbol: ``("dim", name)`` for a named dimension,
    ``("unknown", id(v), axis)`` for an unnamed dimension of value ``v``, or an expression of them.
    Dimensions are read from the values' own types (annotate them first). Used by rules that must
    know whether a run-time shape leaves a dimension as it is (the gradient of Resize by sizes).

    Returns:
        The elements, or None when ``value`` is not traceable within ``depth`` producers.
    """
    tracker = ShapeSimplification()
    tracker._in_function, tracker._types = True, {}  # read Value.type, not a fresh inference
    partials: dict[Value, Partial] = {}

    def visit(v: Value | None, budget: int) -> None:
        if v is None or v in partials or budget <= 0 or constant_array(v) is not None:
            return
        node = v.producer()
        if node is None or not is_standard(node) or node.op_type not in _RULES:
            return
        for x in node.inputs:
            visit(x, budget - 1)
        tracker._propagate(node, partials)

    visit(value, depth)
    found = tracker._partial(value, partials)
    return None if found is None else found.elems
