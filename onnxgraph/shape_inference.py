"""Types and shapes from onnx shape inference, written back onto the IR's values.

Inference runs on a copy of the model without the data of its large tensors, so it costs the same
for a 10 GB model as for a small one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.errors import OnnxGraphError, one_line
from onnxgraph.model import Model
from onnxgraph.serde.exporter import export_model
from onnxgraph.serde.external import has_data, metadata_only
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value


def _known_dims(type_proto: onnx.TypeProto | None) -> tuple[int, int]:
    """How much a type says, as a key that grows with knowledge: (kind, fixed dims).

    Kind is -2 for no type, -1 for a non-tensor type (sequence, map, optional) or a tensor without
    an element type, 0 for a tensor without a shape, 1 with one.
    """
    if type_proto is None or not type_proto.WhichOneof("value"):
        return (-2, 0)
    if types.elem_type_from(type_proto) is None:
        return (-1, 0)
    shape = types.shape_of(type_proto)
    return (0, 0) if shape is None else (1, sum(isinstance(d, int) for d in shape))


def _lacking(type_proto: onnx.TypeProto | None, symbols: frozenset[str]) -> bool:
    """A tensor type (or none) without a shape, with an unknown dim, or with a dim named by inference
    (``unk__3``) rather than by the graph's inputs (``symbols``)."""
    if type_proto is not None and not type_proto.HasField("tensor_type"):
        return False
    shape = types.shape_of(type_proto)
    return shape is None or any(d is None or (isinstance(d, str) and d not in symbols) for d in shape)


def _input_symbols(graph: onnx.GraphProto) -> frozenset[str]:
    """The symbolic dimension names the graph's inputs declare."""
    return frozenset(d for info in graph.input for d in types.shape_of(info.type) or () if isinstance(d, str) and d)


_INLINE_BYTES = 4096
"""Tensors up to this size keep their data for inference's data propagation (shape constants);
larger ones go without data, so inference costs the same for a 10 GB model as for a small one."""
_CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})


def _small_tensors_only(tensor: Tensor, name: str) -> onnx.TensorProto:
    return tensor.to_proto(name) if tensor.nbytes <= _INLINE_BYTES else metadata_only(tensor, name)


def _forget_value_info(graph: onnx.GraphProto) -> None:
    del graph.value_info[:]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                _forget_value_info(attr.g)
            for sub in attr.graphs:
                _forget_value_info(sub)


def _collect(graph: onnx.GraphProto, found: dict[str, onnx.TypeProto]) -> None:
    for info in (*graph.input, *graph.value_info, *graph.output):
        if info.HasField("type"):
            found.setdefault(info.name, info.type)
    for node in graph.node:
        if node.op_type not in _CONTROL_FLOW or node.domain not in ("", "ai.onnx"):
            continue  # walking every node's attributes in Python protobuf costs more than inference
        for attr in node.attribute:
            if attr.HasField("g"):
                _collect(attr.g, found)
            for sub in attr.graphs:
                _collect(sub, found)


def inferred_types(
    model: Model, *, forget_value_info: bool = False, strict: bool = False, symbolic_fallback: bool = False
) -> dict[str, onnx.TypeProto]:
    """Every value's type from onnx shape inference with data propagation, by value name.

    Args:
        model: the model (not changed). Model-local function bodies are not inferred.
        forget_value_info: ignore the intermediate types the file recorded (they may hold the sizes
            seen at export) so inference derives them from the inputs' declared, symbolic shapes.
        strict: raise when inference fails instead of returning an empty dict.
        symbolic_fallback: where onnx leaves a node output without a shape or with a dimension it
            cannot name from the inputs (a rank lost after Squeeze/Unsqueeze chains, dims lost after
            Reshape or Expand: ``unk__3``), ask onnxruntime's symbolic shape inference, which tracks
            shape arithmetic symbolically (see :func:`_symbolic_types`), and keep whichever type
            says more. Both inferences then also see the small integer arrays computed from
            constants alone as constants (see :func:`_shape_constants`).

    Raises:
        OnnxGraphError: with ``strict``, inference rejected the model.
    """
    proto = export_model(model, _small_tensors_only)
    if forget_value_info:
        _forget_value_info(proto.graph)
    if symbolic_fallback:
        _as_constants(proto.graph, _shape_constants(model))
    try:
        proto = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # noqa: BLE001 - inference gives up on some valid models
        if not strict:
            return {}
        raise OnnxGraphError(f"shape inference failed: {one_line(exc, last=True)}") from exc
    found: dict[str, onnx.TypeProto] = {}
    _collect(proto.graph, found)
    symbols = _input_symbols(proto.graph)
    if symbolic_fallback and _lacking_shapes(proto.graph, found, symbols):
        for name, type_proto in _symbolic_types(proto).items():
            old = found.get(name)
            if _lacking(old, symbols) and _known_dims(type_proto) > _known_dims(old):
                found[name] = type_proto
    return found


def _shape_constants(model: Model) -> dict[str, np.ndarray]:
    """Small integer arrays that main-graph nodes compute from constants alone, by output name.

    Exporters compute some shape arguments from constants with ops that neither inference
    evaluates: ``nn.MultiheadAttention``'s TorchScript export splits its packed Q/K/V projection with
    a Reshape to ``shape[:Mod(2, 3)] + [3, E] + shape[Mod(2, 3) + 1:]``, so onnx cannot tell the
    target's length (the attention's shapes stay unknown) and onnxruntime's symbolic inference gives
    up on the whole model. The arithmetic is the constant folder's numpy path
    (:mod:`onnxgraph.optimizers.shape_arith`): integer inputs of at most ``SMALL`` elements, never
    a weight's data.
    """
    from onnxgraph.optimizers import shape_arith
    from onnxgraph.optimizers.utils import constant_tensor

    known: dict[Value, np.ndarray] = {}

    def small_constant(value: Value) -> np.ndarray | None:
        if value in known:
            return known[value]
        tensor = constant_tensor(value)
        return tensor.numpy() if tensor is not None and tensor.size <= shape_arith.SMALL else None

    for node in model.graph:
        if node.op_type not in shape_arith.EVALUATORS or node.domain not in ("", "ai.onnx"):
            continue
        arrays = [None if value is None else small_constant(value) for value in node.inputs]
        if all(array is not None or value is None for array, value in zip(arrays, node.inputs)):
            results = shape_arith.evaluate(node, arrays)
            if results is not None:
                known.update(zip(node.outputs, results))
    return {value.name: array for value, array in known.items() if value.name}


def _as_constants(graph: onnx.GraphProto, arrays: Mapping[str, np.ndarray]) -> None:
    """Replace each node of ``graph`` whose outputs are all in ``arrays`` by Constant nodes."""
    if not arrays:
        return
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.output and all(name in arrays for name in node.output):
            nodes.extend(
                onnx.helper.make_node("Constant", [], [name], value=onnx.numpy_helper.from_array(arrays[name]))
                for name in node.output
            )
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


def _lacking_shapes(graph: onnx.GraphProto, found: Mapping[str, onnx.TypeProto], symbols: frozenset[str]) -> bool:
    """True when some output of a main-graph node lacks a shape or a dimension (see :func:`_lacking`)."""
    return any(name and _lacking(found.get(name), symbols) for node in graph.node for name in node.output)


def _weights_as_inputs(proto: onnx.ModelProto) -> None:
    """Declare the main graph's data-less initializers (large weights exported without their bytes)
    as typed graph inputs: symbolic inference reads every initializer it meets as an array."""
    kept = []
    declared = {info.name for info in proto.graph.input}  # IR < 4 lists initializers as inputs too
    for tensor in proto.graph.initializer:
        if has_data(tensor) or math.prod(tensor.dims) == 0:
            kept.append(tensor)
        elif tensor.name not in declared:
            proto.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(kept)


def _symbolic_types(proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Types from onnxruntime's symbolic shape inference (it ships with onnxruntime); empty when it
    is unavailable or fails on the model (it knows fewer ops than onnx, and no newer opsets).

    It does not guess output ranks of ops it does not know (custom domains): a guessed type would
    pose as a fact to precision conversion and cost counting; the shapes inferred up to such an op
    are kept. ``proto`` (a weightless copy) is changed: its data-less weights become graph inputs.
    """
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, get_opset

        _weights_as_inputs(proto)
        if (get_opset(proto) or 0) < 7:
            return {}
        # The steps of SymbolicShapeInference.infer_shapes, which, when some shape stays unknown,
        # saves the model as sym_shape_infer_temp.onnx in the working folder and raises instead.
        inference = SymbolicShapeInference(2**31 - 1, True, False, 0)
        inference._preprocess(proto)
        while inference.run_:
            inference._infer_impl()
        inference._update_output_from_vi()
        inferred = inference.out_mp_
    except Exception:  # noqa: BLE001 - a fallback: onnx's own result stands
        return {}
    found: dict[str, onnx.TypeProto] = {}
    _collect(inferred.graph, found)
    return found


def _values_by_name(model: Model) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for graph in model.graph.all_graphs():
        for value in graph.inputs:
            if value.name is not None:
                values[value.name] = value
        for node in graph:
            for value in node.outputs:
                if value.name:
                    values[value.name] = value
    return values


def _override_inputs(model: Model, input_shapes: Mapping[str, Sequence[int]]) -> None:
    by_name = {v.name: v for v in model.graph.inputs if v.name is not None}
    for name, dims in input_shapes.items():
        value = by_name.get(name)
        if value is None:
            known = ", ".join(by_name) or "none"
            raise OnnxGraphError(f"--input-shape: the model has no input '{name}' (inputs: {known})")
        if value.shape is not None and len(value.shape) != len(dims):
            raise OnnxGraphError(f"--input-shape: input '{name}' has rank {len(value.shape)}, not {len(dims)}")
        value.type = types.tensor_type(value.elem_type or onnx.TensorProto.FLOAT, tuple(dims))


def _type_initializers(model: Model) -> None:
    for graph in model.all_graphs():
        for value in graph.initializers.values():
            if value.type is None and value.const_value is not None:
                value.type = types.tensor_type(value.const_value.elem_type, value.const_value.dims)


def infer_shapes(model: Model, input_shapes: Mapping[str, Sequence[int]] | None = None, *, strict: bool = True) -> int:
    """Annotate the main graph's values (and its subgraphs') with inferred types and shapes.

    The project's one shape resolution (``info``'s cost model, ``grad``, ``convert``, ``viz``): onnx
    shape inference with data propagation, then onnxruntime's symbolic shape inference wherever onnx
    leaves a shape or a dimension unknown (see :func:`inferred_types`). A value's type changes only
    when the inferred one says more (a shape where it had none, or more fixed dims).

    Args:
        model: the model, changed in place.
        input_shapes: fixed shapes for some graph inputs (they replace the declared shapes first;
            the intermediate types the file recorded are then ignored, as they were written for
            other sizes).
        strict: raise when onnx shape inference rejects the model; otherwise leave the types as
            they are.

    Returns:
        The number of values whose type became more specific.

    Raises:
        OnnxGraphError: ``input_shapes`` names an unknown input or has the wrong rank; with
            ``strict``, inference rejected the model.
    """
    if input_shapes:
        _override_inputs(model, input_shapes)
    _type_initializers(model)
    inferred = inferred_types(model, forget_value_info=bool(input_shapes), strict=strict, symbolic_fallback=True)
    changed = 0
    for name, value in _values_by_name(model).items():
        new = inferred.get(name)
        if new is not None and _known_dims(new) > _known_dims(value.type):
            value.type = new
            changed += 1
    return changed


def annotate_types(model: Model) -> int:
    """Give node outputs the types inference derives from the inputs' declared shapes.

    Passes that need shapes (no-op elimination, MatMul+Add into Gemm) read ``Value.type``. Types the
    file recorded for intermediate values may hold the sizes seen at export, so inferred types
    replace them; graph outputs keep their declared types (and get one when they have none).
    Initializers that are not graph inputs (IR >= 4 files declare no type for them) get the type of
    their tensor.

    Returns:
        How many values got a type.
    """
    inferred = inferred_types(model, forget_value_info=True)
    annotated = 0
    for graph in model.graph.all_graphs():
        for value in graph.initializers.values():
            if value.type is None and isinstance(value.const_value, Tensor):
                value.type = types.tensor_type(value.const_value.elem_type, value.const_value.dims)
                annotated += 1
        for node in graph:
            for value in node.outputs:
                new = inferred.get(value.name) if value.name else None
                declared = value.type is not None and value.is_graph_output()
                if new is not None and new.HasField("tensor_type") and not declared:
                    value.type = new
                    annotated += 1
    return annotated
