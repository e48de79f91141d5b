"""GradBuilder: the op builder that gradient rules write with, plus the helpers they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeGuard

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.builder import OpBuilder
from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value


class GradBuilder(OpBuilder):
    """An :class:`~onnxgraph.builder.OpBuilder` that knows the model's opset.

    Args:
        graph: the graph that receives the gradient nodes (appended after the forward nodes).
        opset: the default-domain opset version of the model, so helpers emit the right op form.
        constants_as_nodes: make constants Constant nodes (for subgraphs, e.g. If branches).
    """

    def __init__(self, graph: Graph, opset: int, *, constants_as_nodes: bool = False):
        super().__init__(graph, constants_as_nodes=constants_as_nodes)
        self.opset = opset
        self._constants: dict[tuple[str, tuple[int, ...], bytes], Value] = {}
        self.reached: set[Value] = set()
        """Values that depend on a ``wrt`` value (set by the driver): the ones worth a gradient."""

    def add_node(self, node: Node) -> Node:
        """Insert a node (see OpBuilder.add_node) and record its outputs' element type, so constants
        built later from them (``scalar(1, t)``) get the right type."""
        super().add_node(node)
        elem = _result_elem_type(node.op_type, node.inputs, node)
        if elem:
            for value in node.outputs:
                if value.type is None:
                    value.type = types.tensor_type(elem, None)
        return node

    def wants(self, x: Value | None) -> TypeGuard[Value]:
        """True when input ``x`` leads back to a ``wrt`` value, so its gradient is worth building."""
        return x is not None and x in self.reached

    # -- constants ------------------------------------------------------------------------------
    def const(self, data: Any, dtype: Any = None, *, name: str = "const") -> Value:
        """A constant (see OpBuilder.const); small ones are shared, not repeated per use."""
        array = np.asarray(data, dtype=dtype)
        if array.size > 16:
            return super().const(array, name=name)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = super().const(array, name=name)
        return self._constants[key]

    def scalar(self, value: float, like: Value) -> Value:
        """A scalar constant in ``like``'s element type."""
        return self.const(np.array(value, dtype=dtype_of(like)))

    def typed(self, value: Value, like: Value, shape: tuple[types.Dim, ...] | None = None) -> Value:
        """Annotate a new value with ``like``'s element type (and ``shape``) for later rules."""
        if (value.type is None or value.shape is None) and like.elem_type:
            value.type = types.tensor_type(like.elem_type, shape)
        return value

    def ints(self, values: Sequence[int]) -> Value:
        """A 1-D int64 constant (axes, shapes, starts...)."""
        return self.const(np.array(list(values), dtype=np.int64))

    # -- shapes ---------------------------------------------------------------------------------
    def shape(self, x: Value) -> Value:
        """``x``'s shape as an int64 vector: a constant when static, else a Shape node."""
        dims = static_shape(x)
        return self.ints(dims) if dims is not None else self.Shape(x)

    def reshape_like(self, g: Value, x: Value) -> Value:
        """``g`` reshaped to ``x``'s shape."""
        return self.Reshape(g, self.shape(x))

    def expand_like(self, g: Value, x: Value) -> Value:
        return self.Expand(g, self.shape(x))

    # -- reductions -----------------------------------------------------------------------------
    def reduce(self, op_type: str, x: Value, axes: Sequence[int] | Value | None, keepdims: bool = True) -> Value:
        """``op_type`` (ReduceSum, ReduceMean, ReduceMax...) over ``axes`` (None: all), in the form
        the model's opset expects (axes as an input from opset 18, 13 for ReduceSum)."""
        axes_as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if axes is None:
            return self.op(op_type, x, keepdims=int(keepdims))
        if isinstance(axes, Value):
            if not axes_as_input:
                raise ValueError(f"{op_type} needs static axes before opset 18")
            return self.op(op_type, x, axes, keepdims=int(keepdims))
        if axes_as_input:
            return self.op(op_type, x, self.ints(axes), keepdims=int(keepdims))
        return self.op(op_type, x, keepdims=int(keepdims), axes=list(axes))

    def sum_to(self, g: Value, axes: Sequence[int], keepdims: bool = True) -> Value:
        return self.reduce("ReduceSum", g, axes, keepdims) if axes else g

    def unsqueeze(self, x: Value, axes: Sequence[int]) -> Value:
        return self.Unsqueeze(x, self.ints(axes)) if axes else x

    # -- gradient plumbing ----------------------------------------------------------------------
    def add_all(self, terms: Sequence[Value | None]) -> Value | None:
        """The sum of the non-None terms (None when there is none); upstream None means zero."""
        present = [t for t in terms if t is not None]
        if not present:
            return None
        if len(present) == 1:
            return present[0]
        if len(present) == 2:
            return self.Add(*present)
        return self.Sum(*present)

    def unbroadcast(self, g: Value, x: Value, full: tuple[types.Dim, ...] | None) -> Value:
        """Reduce ``g`` (of shape ``full``, the broadcast result) to ``x``'s shape.

        This is the one place broadcasting is undone. When the ranks are known and every dim of
        ``x`` is 1 or matches ``full`` (same size or same symbol), the broadcast axes are found now:
        a ReduceSum keeping dims over the stretched axes, one dropping the leading axes. Otherwise
        the same computation happens at run time with Shape-based ops.
        """
        xs = x.shape
        if xs is None or full is None or len(full) < len(xs):
            return self._unbroadcast_dynamic(g, x)
        lead = len(full) - len(xs)
        stretched = []
        for i, (d, f) in enumerate(zip(xs, full[lead:])):
            if d == 1 and f != 1:
                stretched.append(lead + i)
            elif d is None or d != f:
                return self._unbroadcast_dynamic(g, x)
        g = self.sum_to(g, stretched, keepdims=True)
        return self.sum_to(g, list(range(lead)), keepdims=False)

    def _unbroadcast_dynamic(self, g: Value, x: Value) -> Value:
        gshape, xshape = self.Shape(g), self.Shape(x)
        lead = self.Sub(self.Size(gshape), self.Size(xshape))
        lead_axes = self.Range(self.const(np.int64(0)), lead, self.const(np.int64(1)))
        g = self.ReduceSum(g, lead_axes, keepdims=0, noop_with_empty_axes=1)
        ones_axes = self.Squeeze(self.NonZero(self.Equal(xshape, self.ints([1]))), self.ints([0]))
        g = self.ReduceSum(g, ones_axes, keepdims=1, noop_with_empty_axes=1)
        return self.Reshape(g, xshape)

    def zeros_like(self, x: Value, shape: Value | None = None) -> Value:
        """Zeros of ``x``'s element type and shape (or ``shape``): a scatter's target or the
        gradient of a wrt value no path reaches, never a stand-in for an absent gradient."""
        fill = onnx.helper.make_tensor("zero", x.elem_type or onnx.TensorProto.FLOAT, [1], [0])
        return self.ConstantOfShape(self.shape(x) if shape is None else shape, value=Tensor.from_proto(fill))

    def permuted_shape(self, x: Value, perm: Sequence[int]) -> Value:
        """The shape ``Transpose(x, perm)`` would have, without transposing ``x``."""
        dims = static_shape(x)
        if dims is not None:
            return self.ints([dims[p] for p in perm])
        return self.Gather(self.Shape(x), self.ints(perm))

    def constant_array(self, value: Value | None) -> np.ndarray | None:
        """The data of a constant input: an initializer or a Constant node (any of its value
        attributes, as exporters write them); None when it is computed at run time."""
        from onnxgraph.optimizers.utils import constant_node_tensor

        if value is None:
            return None
        if isinstance(value.const_value, Tensor):  # a sparse initializer counts as run-time data
            return np.asarray(value.const_value.numpy())
        producer = value.producer()
        if producer is not None and producer.op_type == "Constant" and producer.domain in ("", "ai.onnx"):
            tensor = constant_node_tensor(producer)
            return None if tensor is None else np.asarray(tensor.numpy())
        return None

    def constant_ints(self, value: Value | None) -> list[int] | None:
        """The integers held by a constant input (see :meth:`constant_array`), else None."""
        array = self.constant_array(value)
        return None if array is None else [int(v) for v in array.reshape(-1)]

    def dims(self, x: Value, start: int, end: int | None = None) -> Value:
        """``x.shape[start:end]`` as a 1-D int64 tensor: a constant where those dims are static,
        else read at run time (Shape with start/end, or Shape + Slice before opset 15)."""
        shape = x.shape
        known = None if shape is None else types.static_dims(shape[start:end])
        if known is not None:
            return self.ints(known)
        if self.opset >= 15:
            return self.Shape(x, start=start) if end is None else self.Shape(x, start=start, end=end)
        stop = np.iinfo(np.int64).max if end is None else end
        return self.Slice(self.Shape(x), self.ints([start]), self.ints([stop]), self.ints([0]))

    def concat_shape(self, *parts: Sequence[int] | Value) -> Value:
        """A 1-D int64 shape joined from static pieces (lists of ints) and run-time ones (values)."""
        merged: list[Sequence[int] | Value] = []
        for part in parts:
            if not isinstance(part, Value) and merged and not isinstance(merged[-1], Value):
                merged[-1] = [*merged[-1], *part]
            else:
                merged.append(part)
        pieces = [p if isinstance(p, Value) else self.ints(p) for p in merged if isinstance(p, Value) or p]
        return pieces[0] if len(pieces) == 1 else self.Concat(*pieces, axis=0)

    def axis_size(self, x: Value, axis: int, *, scalar: bool = False) -> Value:
        """``x.shape[axis]`` as a 1-D int64 tensor of one element (a 0-D one with ``scalar``)."""
        dims = x.shape
        size_now = None if dims is None else dims[axis]
        if isinstance(size_now, int):
            return self.const(np.int64(size_now)) if scalar else self.ints([size_now])
        if self.opset >= 15:
            size = self.Shape(x, start=axis, end=axis + 1 if axis != -1 else None)
        else:  # Shape has no start/end before opset 15
            size = self.Gather(self.Shape(x), self.ints([axis]))
        return self.Reshape(size, self.ints([])) if scalar else size

    def one_hot(self, indices: Value, depth: Value, like: Value, axis: int) -> Value:
        """OneHot of ``indices`` (0/1 values) in ``like``'s element type.

        Built with int64 indices and float32 values, the form onnxruntime implements (it has no
        float64 or float16 OneHot), then cast to ``like``'s type when that differs."""
        if indices.elem_type not in (None, onnx.TensorProto.INT64):
            indices = self.Cast(indices, to=onnx.TensorProto.INT64)
        hot = self.OneHot(indices, depth, self.const(np.array([0, 1], dtype=np.float32)), axis=axis)
        target = like.elem_type or onnx.TensorProto.FLOAT
        return hot if target == onnx.TensorProto.FLOAT else self.Cast(hot, to=target)

    def count(self, x: Value, like: Value) -> Value:
        """The number of elements of ``x`` as a scalar of ``like``'s element type."""
        dims = static_shape(x)
        if dims is not None:
            return self.scalar(int(np.prod(dims)), like)
        return self.Cast(self.Size(x), to=like.elem_type)

    def ensure_output(self, node: Node, index: int, elem_type: int | None) -> Value:
        """A forward node's optional output (MaxPool Indices, LayerNormalization InvStdDev...),
        added to the node when the model omits it, so the backward pass reuses it; typed
        ``elem_type`` unless that is unknown too."""
        value = node.ensure_output(index)
        if value.elem_type is None and elem_type is not None:
            value.type = types.tensor_type(elem_type, None)
        return value


_BOOL_RESULT = frozenset({"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Not", "Xor"})
_INT64_RESULT = frozenset({"Shape", "Size", "NonZero", "ArgMax", "ArgMin"})


def _result_elem_type(op_type: str, inputs: Sequence[Value | None], node: Node) -> int | None:
    """The element type of an op's (first) result as far as gradient rules need it."""
    if op_type in _BOOL_RESULT:
        return onnx.TensorProto.BOOL
    if op_type in _INT64_RESULT:
        return onnx.TensorProto.INT64
    if op_type == "Cast":
        return node.attr("to")
    if op_type == "ConstantOfShape":
        value = node.attr("value")
        return value.elem_type if value is not None else onnx.TensorProto.FLOAT
    source = inputs[2:3] if op_type == "OneHot" else inputs[1:] if op_type == "Where" else inputs
    return next((v.elem_type for v in source if v is not None and v.elem_type), None)


def upstream(grads: Sequence[Value | None], index: int = 0) -> Value:
    """The upstream gradient of output ``index``, for a rule whose op's gradient can only arrive there
    (a single-output op, or a rule registered with ``outputs=(index,)``: the driver calls a rule only
    when a gradient arrives).

    Raises:
        GradientError: there is none (a rule registered for the wrong outputs).
    """
    g = grads[index] if index < len(grads) else None
    if g is None:
        raise GradientError(f"the rule expects an upstream gradient at output {index} and got none")
    return g


def inverse_permutation(perm: Sequence[int]) -> list[int]:
    """The perm that undoes Transpose(perm)."""
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return inverse


def dtype_of(x: Value) -> np.dtype:
    """The numpy dtype of a tensor value (float32 when unknown)."""
    return types.np_dtype(x.elem_type) if x.elem_type else np.dtype(np.float32)


def static_shape(x: Value) -> tuple[int, ...] | None:
    """``x``'s dims when all are known integers, else None."""
    return None if x.shape is None else types.static_dims(x.shape)


def rank_of(x: Value) -> int:
    """``x``'s rank; raises GradientError when shape inference could not tell it."""
    return len(known_shape(x))


def known_shape(x: Value) -> tuple[types.Dim, ...]:
    """``x``'s shape (dims may be symbolic or unknown); raises GradientError when even its rank is unknown."""
    if x.shape is None:
        raise GradientError(f"the rank of {x.name!r} is unknown (shape inference could not tell it)")
    return x.shape
