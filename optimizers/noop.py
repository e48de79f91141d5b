"""No-op elimination: nodes whose output equals their input (or a simpler chain) are removed.

Cases (``_try_<case>``; a graph output keeps its name, type and shape, and graph inputs are never
removed: when the surviving value is a graph input or initializer and the removed one a graph
output, the node stays):

1. ``identity``: Identity.
2. ``dropout``: Dropout in inference mode (no training_mode, or a constant false one; ``is_test``
   set before opset 7) whose mask output is unused.
3. ``cast``: Cast to the input's own element type.
4. ``cast_pair``: Cast(Cast(x, t1), t2) -> Cast(x, t2) when t1 holds every value of x's type exactly
   (widening), so the inner cast cannot change what the outer one sees.
5. ``reshape``: Reshape to the shape the input already has (0 copies, one -1 infers the rest).
6. ``reshape_pair``: Reshape(Reshape(x, s1), s2) and Reshape(Flatten(x), s2) -> Reshape(x, s2) unless
   s2 copies a dim (0).
7. ``flatten``: Flatten of a 2-D input at axis 1.
8. ``squeeze``: Squeeze without axes of an input whose dims are all known and none is 1.
9. ``squeeze_unsqueeze_pair``: Squeeze(Unsqueeze(x, a), a) and Unsqueeze(Squeeze(x, a), a) -> x.
10. ``unsqueeze``: Unsqueeze with an empty axes list.
11. ``expand``: Expand to a shape that broadcasting leaves equal to the input's.
12. ``transpose``: Transpose with the identity permutation.
13. ``transpose_pair``: two Transposes whose permutations compose to the identity -> x.
14. ``pad``: Pad with all pads zero.
15. ``slice``: Slice taking every element (start 0, step 1, end past the dim) on every axis.
16. ``split``: Split into a single output.
17. ``concat``: Concat of a single input.
18. ``arithmetic``: x + 0, 0 + x, x - 0, x * 1, 1 * x, x / 1 where the constant broadcasts to x's
    shape (so the result has x's shape and type).
19. ``logical``: And(x, True), And(True, x), Or(x, False), Or(False, x) where the constant broadcasts
    to x's shape (the causal-mask clutter of torch exports).
20. ``unsqueeze_pair``: Unsqueeze(Unsqueeze(x, a1), a2) -> Unsqueeze(x, a) with the inner axes mapped
    to where they end up (negative axes need x's rank).
21. ``where``: Where(c, x, x), Where(True, x, y) and Where(False, y, x) -> x where the condition (a
    constant, all True or all False) and the other branch broadcast into x's shape.
22. ``transpose_unit_dims``: a Transpose that moves only dims known to be 1 (the others keep their
    order) is a Reshape to a constant shape (0 for a symbolic dim that keeps its axis, -1 for at most
    one that moves), which ``reshape_pair`` can then merge with its neighbours.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import numpy as np
import onnx

from onnxgraph.attribute import Attribute
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.rewriter.editing import GraphEditor, drop_stale_value_info, scopes
from onnxgraph.optimizers.rewriter.values import (
    axes_arg,
    const_ints,
    const_value,
    input_ints,
    pads_arg,
    transpose_perm,
)
from onnxgraph.optimizers.utils import new_constant
from onnxgraph.value import Value

_T = onnx.TensorProto
# (x's type, t1): casting x to t1 keeps every value exactly.
_WIDENS: dict[int, frozenset[int]] = {
    _T.BOOL: frozenset(
        {
            _T.INT8,
            _T.INT16,
            _T.INT32,
            _T.INT64,
            _T.UINT8,
            _T.UINT16,
            _T.UINT32,
            _T.UINT64,
            _T.FLOAT16,
            _T.BFLOAT16,
            _T.FLOAT,
            _T.DOUBLE,
        }
    ),
    _T.INT8: frozenset({_T.INT16, _T.INT32, _T.INT64, _T.FLOAT16, _T.FLOAT, _T.DOUBLE}),
    _T.UINT8: frozenset(
        {
            _T.INT16,
            _T.INT32,
            _T.INT64,
            _T.UINT16,
            _T.UINT32,
            _T.UINT64,
            _T.FLOAT16,
            _T.FLOAT,
            _T.DOUBLE,
        }
    ),
    _T.INT16: frozenset({_T.INT32, _T.INT64, _T.FLOAT, _T.DOUBLE}),
    _T.UINT16: frozenset({_T.INT32, _T.INT64, _T.UINT32, _T.UINT64, _T.FLOAT, _T.DOUBLE}),
    _T.INT32: frozenset({_T.INT64, _T.DOUBLE}),
    _T.UINT32: frozenset({_T.INT64, _T.UINT64, _T.DOUBLE}),
    _T.FLOAT16: frozenset({_T.FLOAT, _T.DOUBLE}),
    _T.BFLOAT16: frozenset({_T.FLOAT, _T.DOUBLE}),
    _T.FLOAT: frozenset({_T.DOUBLE}),
}
_FULL_RANGE_END = 2**31 - 1  # Slice ends at or above this reach past any real dimension


class NoOpElimination(Pass):
    __doc__ = __doc__
    name = "noop"
    rewrites = (
        "identity",
        "dropout",
        "cast",
        "cast_pair",
        "reshape",
        "reshape_pair",
        "flatten",
        "squeeze",
        "squeeze_unsqueeze_pair",
        "unsqueeze",
        "expand",
        "transpose",
        "transpose_pair",
        "pad",
        "slice",
        "split",
        "concat",
        "arithmetic",
        "logical",
        "unsqueeze_pair",
        "where",
        "transpose_unit_dims",
    )

    def __init__(self, *, disabled: Iterable[str] = ()) -> None:
        super().__init__(disabled=disabled)
        self._editor: GraphEditor | None = None
        self._opset = 0
        self._in_function = False
        self._cases: dict[str, list[tuple[str, Callable[[Node], bool]]]] = {
            "Identity": [("identity", self._try_identity)],
            "Dropout": [("dropout", self._try_dropout)],
            "Cast": [("cast", self._try_cast), ("cast_pair", self._try_cast_pair)],
            "Reshape": [("reshape", self._try_reshape), ("reshape_pair", self._try_reshape_pair)],
            "Flatten": [("flatten", self._try_flatten)],
            "Squeeze": [
                ("squeeze", self._try_squeeze),
                ("squeeze_unsqueeze_pair", self._try_squeeze_unsqueeze_pair),
            ],
            "Unsqueeze": [
                ("unsqueeze", self._try_unsqueeze),
                ("squeeze_unsqueeze_pair", self._try_squeeze_unsqueeze_pair),
                ("unsqueeze_pair", self._try_unsqueeze_pair),
            ],
            "Expand": [("expand", self._try_expand)],
            "Transpose": [
                ("transpose", self._try_transpose),
                ("transpose_pair", self._try_transpose_pair),
                ("transpose_unit_dims", self._try_transpose_unit_dims),
            ],
            "Pad": [("pad", self._try_pad)],
            "Slice": [("slice", self._try_slice)],
            "Split": [("split", self._try_split)],
            "Concat": [("concat", self._try_concat)],
            "Add": [("arithmetic", self._try_arithmetic)],
            "Sub": [("arithmetic", self._try_arithmetic)],
            "Mul": [("arithmetic", self._try_arithmetic)],
            "Div": [("arithmetic", self._try_arithmetic)],
            "And": [("logical", self._try_logical)],
            "Or": [("logical", self._try_logical)],
            "Where": [("where", self._try_where)],
        }

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        self._editor = GraphEditor(model)
        for scope in scopes(model):
            self._opset, self._in_function = scope.opset, scope.in_function
            graph = scope.graph
            for node in graph:
                if node.graph is graph and node.domain in ("", "ai.onnx"):
                    self._simplify(node, stats)
            drop_stale_value_info(graph)
        self._editor = None
        return stats

    def _simplify(self, node: Node, stats: Counter[str]) -> None:
        """Apply this node's cases until one removes it or none applies."""
        graph = node.graph
        progress = True
        while progress and node.graph is graph:
            progress = False
            for case, attempt in self._cases.get(node.op_type, ()):
                if self.allows(case) and attempt(node):
                    stats[case] += 1
                    progress = True
                    break

    # -- helpers --------------------------------------------------------------------------------
    def _forward(self, node: Node, value: Value | None, inner: Node | None = None) -> bool:
        """Replace the node's first output with ``value`` and remove the node (and ``inner``, the
        node before it, when nothing needs it any more)."""
        editor = self._editor
        assert editor is not None
        if value is None or any(editor.is_needed(o) for o in node.outputs[1:]):
            return False
        if not editor.can_replace(node.outputs[0], value):
            return False
        editor.replace(node.outputs[0], value)
        editor.remove_unused([node] if inner is None else [node, inner])
        return True

    def _rewire_past(self, node: Node, producer: Node, new_input: Value | None) -> bool:
        """Make ``node`` read ``new_input`` instead of ``producer``'s output; drop ``producer``
        when nothing needs it any more."""
        if new_input is None:
            return False
        node.replace_input_with(0, new_input)
        assert self._editor is not None
        self._editor.remove_unused([producer])
        return True

    @staticmethod
    def _same_graph_producer(node: Node, op_type: str) -> Node | None:
        x = node.inputs[0] if node.inputs else None
        producer = x.producer() if x is not None else None
        if producer is None or producer.graph is not node.graph or producer.op_type != op_type:
            return None
        return producer if producer.domain in ("", "ai.onnx") else None

    # -- cases ----------------------------------------------------------------------------------
    def _try_identity(self, node: Node) -> bool:
        return self._forward(node, node.inputs[0])

    def _try_dropout(self, node: Node) -> bool:
        if self._opset < 7 and not node.attr("is_test", 0):
            return False
        if len(node.inputs) > 2 and node.inputs[2] is not None:
            training = const_value(node.inputs[2])
            if training is None or bool(training.reshape(-1)[0]):
                return False
        return self._forward(node, node.inputs[0])

    def _try_cast(self, node: Node) -> bool:
        x = node.input(0)
        return x.elem_type is not None and x.elem_type == node.attr("to") and self._forward(node, x)

    def _try_cast_pair(self, node: Node) -> bool:
        inner = self._same_graph_producer(node, "Cast")
        if inner is None:
            return False
        x = inner.input(0)
        if x.elem_type is None or inner.attr("to") not in _WIDENS.get(x.elem_type, ()):
            return False
        return self._rewire_past(node, inner, x)

    def _try_reshape(self, node: Node) -> bool:
        x, target = node.input(0), input_ints(node, 1)
        shape = x.shape
        if shape is None or target is None or len(target) != len(shape) or target.count(-1) > 1:
            return False
        allowzero = node.attr("allowzero", 0)
        for dim, t in zip(shape, target, strict=True):
            if t == -1 or (t == 0 and not allowzero):
                continue
            if dim != t:
                return False
        return self._forward(node, x)

    def _try_reshape_pair(self, node: Node) -> bool:
        inner = self._same_graph_producer(node, "Reshape") or self._same_graph_producer(node, "Flatten")
        target = input_ints(node, 1)
        if inner is None or target is None or (0 in target and not node.attr("allowzero", 0)):
            return False
        return self._rewire_past(node, inner, inner.inputs[0])

    def _try_flatten(self, node: Node) -> bool:
        shape = node.input(0).shape
        return (
            shape is not None
            and len(shape) == 2
            and node.attr("axis", 1) % 2 == 1
            and self._forward(node, node.inputs[0])
        )

    def _try_squeeze(self, node: Node) -> bool:
        shape = node.input(0).shape
        if "axes" in node.attributes or (len(node.inputs) > 1 and node.inputs[1] is not None):
            return False
        if shape is None or not all(isinstance(d, int) and d != 1 for d in shape):
            return False
        return self._forward(node, node.inputs[0])

    def _try_unsqueeze(self, node: Node) -> bool:
        axes = axes_arg(node)
        return axes == [] and self._forward(node, node.inputs[0])

    def _try_squeeze_unsqueeze_pair(self, node: Node) -> bool:
        inverse = "Unsqueeze" if node.op_type == "Squeeze" else "Squeeze"
        inner = self._same_graph_producer(node, inverse)
        if inner is None:
            return False
        outer_axes, inner_axes = axes_arg(node), axes_arg(inner)
        if not outer_axes or not inner_axes:
            return False
        x = inner.input(0)
        # Both axis lists index the larger (unsqueezed) tensor.
        big_rank = None
        if x.shape is not None:
            big_rank = len(x.shape) + (len(inner_axes) if inverse == "Unsqueeze" else 0)
        if any(a < 0 for a in outer_axes + inner_axes) and big_rank is None:
            return False
        normal = (lambda axes: sorted(a % big_rank for a in axes)) if big_rank else sorted
        if normal(outer_axes) != normal(inner_axes):
            return False
        return self._forward(node, x, inner)

    def _try_expand(self, node: Node) -> bool:
        shape, target = node.input(0).shape, input_ints(node, 1)
        if shape is None or target is None or len(target) > len(shape):
            return False
        dims = shape[len(shape) - len(target) :]
        if not all(t == 1 or t == d for t, d in zip(target, dims, strict=True)):
            return False
        return self._forward(node, node.inputs[0])

    def _try_transpose(self, node: Node) -> bool:
        perm = transpose_perm(node)
        return perm is not None and perm == list(range(len(perm))) and self._forward(node, node.inputs[0])

    def _try_transpose_pair(self, node: Node) -> bool:
        inner = self._same_graph_producer(node, "Transpose")
        if inner is None:
            return False
        outer_perm, inner_perm = transpose_perm(node), transpose_perm(inner)
        if outer_perm is None or inner_perm is None or len(outer_perm) != len(inner_perm):
            return False
        if [inner_perm[i] for i in outer_perm] != list(range(len(outer_perm))):
            return False
        return self._forward(node, inner.inputs[0], inner)

    def _try_transpose_unit_dims(self, node: Node) -> bool:
        perm, shape = transpose_perm(node), node.input(0).shape
        if perm is None or shape is None or len(perm) != len(shape) or self._opset < 5:
            return False
        moved = [axis for axis in perm if shape[axis] != 1]
        if moved != sorted(moved):
            return False
        target = [
            d if isinstance(d, int) else 0 if axis == i else -1
            for i, (axis, d) in enumerate((a, shape[a]) for a in perm)
        ]
        if target.count(-1) > 1:
            return False
        assert node.graph is not None
        array = np.array(target, dtype=np.int64)
        node.op_type = "Reshape"
        node.attributes.clear()
        node.set_inputs([node.inputs[0], new_constant(node.graph, array, in_function=self._in_function, before=node)])
        return True

    def _try_pad(self, node: Node) -> bool:
        pads = pads_arg(node)
        return pads is not None and not any(pads) and self._forward(node, node.inputs[0])

    def _try_slice(self, node: Node) -> bool:
        x = node.input(0)
        starts: list[int] | None
        ends: list[int] | None
        axes: list[int] | None
        steps: list[int] | None
        if "starts" in node.attributes:
            starts, ends = list(node.attr("starts")), list(node.attr("ends"))
            axes = node.attr("axes")
            steps = None
        else:
            inputs = list(node.inputs) + [None] * (5 - len(node.inputs))
            starts, ends, axes, steps = (const_ints(v) if v is not None else None for v in inputs[1:5])
            if starts is None or ends is None or (inputs[3] is not None and axes is None):
                return False
            if inputs[4] is not None and steps is None:
                return False
        axes = list(axes) if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            return False
        shape = x.shape
        for axis, start, end, step in zip(axes, starts, ends, steps, strict=True):
            if step != 1 or start != 0:
                return False
            if end >= _FULL_RANGE_END:
                continue
            dim = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
            if not isinstance(dim, int) or end < dim:
                return False
        return self._forward(node, x)

    def _try_split(self, node: Node) -> bool:
        return len(node.outputs) == 1 and self._forward(node, node.inputs[0])

    def _try_concat(self, node: Node) -> bool:
        return len(node.inputs) == 1 and self._forward(node, node.inputs[0])

    def _try_arithmetic(self, node: Node) -> bool:
        if len(node.inputs) != 2:
            return False
        neutral = 0 if node.op_type in ("Add", "Sub") else 1
        candidates = [(node.input(0), node.input(1))]
        if node.op_type in ("Add", "Mul"):
            candidates.append((node.input(1), node.input(0)))
        for x, c in candidates:
            data = const_value(c)
            if data is None or data.dtype.kind not in "iuf" or not data.size or not np.all(data == neutral):
                continue
            if _broadcast_keeps_shape(x.shape, data.shape) and self._forward(node, x):
                return True
        return False

    def _try_logical(self, node: Node) -> bool:
        if len(node.inputs) != 2:
            return False
        neutral = node.op_type == "And"  # And(x, True) = x, Or(x, False) = x
        for x, c in ((node.input(0), node.input(1)), (node.input(1), node.input(0))):
            data = const_value(c)
            if data is None or data.dtype != np.bool_ or not data.size or not np.all(data == neutral):
                continue
            if _broadcast_keeps_shape(x.shape, data.shape) and self._forward(node, x):
                return True
        return False

    def _try_where(self, node: Node) -> bool:
        if len(node.inputs) != 3:
            return False
        cond, x, y = node.input(0), node.input(1), node.input(2)
        if x is y:
            return _fits_into(cond.shape, x.shape) and self._forward(node, x)
        data = const_value(cond)
        if data is None or not data.size or not (np.all(data) or not np.any(data)):
            return False
        kept, other = (x, y) if np.all(data) else (y, x)
        return _fits_into(other.shape, kept.shape) and _fits_into(data.shape, kept.shape) and self._forward(node, kept)

    def _try_unsqueeze_pair(self, node: Node) -> bool:
        inner = self._same_graph_producer(node, "Unsqueeze")
        if inner is None:
            return False
        inner_axes, outer_axes = axes_arg(inner), axes_arg(node)
        x = inner.input(0)
        if not inner_axes or not outer_axes:
            return False
        middle_rank = len(x.shape) + len(inner_axes) if x.shape is not None else None
        if middle_rank is None and any(a < 0 for a in inner_axes + outer_axes):
            return False
        if middle_rank is not None:
            inner_axes = [a % middle_rank for a in inner_axes]
            outer_axes = [a % (middle_rank + len(outer_axes)) for a in outer_axes]
        final_rank = max(inner_axes + outer_axes) + 1 + len(inner_axes) + len(outer_axes)
        kept = [i for i in range(final_rank) if i not in outer_axes]  # where the middle tensor's axes go
        axes = sorted(outer_axes + [kept[a] for a in inner_axes])
        if "axes" in node.attributes:
            node.attributes["axes"] = Attribute.infer("axes", axes)
        else:
            assert node.graph is not None
            array = np.array(axes, dtype=np.int64)
            node.replace_input_with(1, new_constant(node.graph, array, in_function=self._in_function, before=node))
        return self._rewire_past(node, inner, x)


def _fits_into(small: tuple | None, big: tuple | None) -> bool:
    """True when broadcasting a tensor of shape ``small`` into one of shape ``big`` leaves ``big``
    (unknown dims, None, match only 1 on the small side)."""
    if small is None or big is None or len(small) > len(big):
        return False
    dims = big[len(big) - len(small) :]
    return all(s == 1 or (s is not None and s == b) for s, b in zip(small, dims, strict=True))


def _broadcast_keeps_shape(shape: tuple | None, const_shape: tuple[int, ...]) -> bool:
    """True when broadcasting a tensor of ``shape`` with one of ``const_shape`` gives ``shape``."""
    if not const_shape:
        return True
    if shape is None or len(const_shape) > len(shape):
        return False
    dims = shape[len(shape) - len(const_shape) :]
    return all(c == 1 or c == d for c, d in zip(const_shape, dims, strict=True))


PASS = NoOpElimination
