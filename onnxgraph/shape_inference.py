"""Types and shapes from onnx shape inference, written back onto the IR's values.

Inference runs on a weightless copy of the model (:mod:`onnxgraph.serde.detached`), so it costs the
same for a 10 GB model as for a small one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import onnx

from onnxgraph import types
from onnxgraph.errors import OnnxGraphError
from onnxgraph.model import Model
from onnxgraph.serde.detached import detach
from onnxgraph.value import Value


def _known_dims(type_proto: onnx.TypeProto | None) -> int:
    """How much a type says: -1 without an element type, else 1 + the number of fixed dimensions."""
    if types.elem_type_from(type_proto) is None:
        return -1
    shape = types.shape_of(type_proto)
    return 0 if shape is None else 1 + sum(isinstance(d, int) for d in shape)


def _inferred_types(proto: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    found: dict[str, onnx.TypeProto] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for info in (*graph.input, *graph.value_info, *graph.output):
            if info.HasField("type"):
                found.setdefault(info.name, info.type)
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(proto.graph)
    return found


def _values_by_name(model: Model) -> dict[str, Value]:
    values: dict[str, Value] = {}
    for graph in model.graph.all_graphs():
        for value in graph.inputs:
            values[value.name] = value
        for node in graph:
            for value in node.outputs:
                if value.name:
                    values[value.name] = value
    return values


def _override_inputs(model: Model, input_shapes: Mapping[str, Sequence[int]]) -> None:
    by_name = {v.name: v for v in model.graph.inputs}
    for name, dims in input_shapes.items():
        value = by_name.get(name)
        if value is None:
            known = ", ".join(by_name) or "none"
            raise OnnxGraphError(f"--input-shape: the model has no input '{name}' (inputs: {known})")
        if value.shape is not None and len(value.shape) != len(dims):
            raise OnnxGraphError(
                f"--input-shape: input '{name}' has rank {len(value.shape)}, not {len(dims)}"
            )
        value.type = types.tensor_type(value.elem_type or onnx.TensorProto.FLOAT, tuple(dims))


def _type_initializers(model: Model) -> None:
    for graph in model.all_graphs():
        for value in graph.initializers.values():
            if value.type is None and value.const_value is not None:
                value.type = types.tensor_type(value.const_value.elem_type, value.const_value.dims)


def infer_shapes(model: Model, input_shapes: Mapping[str, Sequence[int]] | None = None) -> int:
    """Annotate the main graph's values (and its subgraphs') with inferred types and shapes.

    Args:
        model: the model, changed in place.
        input_shapes: fixed shapes for some graph inputs (they replace the declared shapes first).

    Returns:
        The number of values whose type became more specific.

    Raises:
        OnnxGraphError: ``input_shapes`` names an unknown input or has the wrong rank.
    """
    if input_shapes:
        _override_inputs(model, input_shapes)
    _type_initializers(model)
    proto, _ = detach(model)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except (onnx.shape_inference.InferenceError, RuntimeError) as exc:
        message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise OnnxGraphError(f"shape inference failed: {message}") from exc
    inferred = _inferred_types(proto)
    changed = 0
    for name, value in _values_by_name(model).items():
        new = inferred.get(name)
        if new is not None and _known_dims(new) > _known_dims(value.type):
            value.type = new
            changed += 1
    return changed
