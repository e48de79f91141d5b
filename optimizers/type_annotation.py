"""Annotating values with the types onnx shape inference finds, for passes that need shapes.

Large initializers are exported without their data (shape inference only needs their types), so
this costs little memory even on big models. Only values without a known shape are annotated:
declared types, and the symbolic dimensions in them, are left as they are.
"""

from __future__ import annotations

import onnx

from onnxgraph.model import Model
from onnxgraph.serde.exporter import export_model
from onnxgraph.serde.external import metadata_only
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

_INLINE_LIMIT = 1 << 16  # bytes; shape-carrying constants are far smaller


def _small_tensors_only(tensor: Tensor, name: str) -> onnx.TensorProto:
    if tensor.nbytes <= _INLINE_LIMIT:
        return tensor.to_proto(name)
    return metadata_only(tensor, name)


def annotate_types(model: Model) -> int:
    """Run onnx shape inference on ``model`` and record the types it finds on the IR's values.

    Returns:
        How many values got a type. Models that shape inference rejects are left unannotated.
    """
    proto = export_model(model, _small_tensors_only)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, RuntimeError):
        return 0
    found: dict[str, onnx.TypeProto] = {}
    _collect(inferred.graph, found)
    values: dict[str, Value] = {}
    for graph in model.graph.all_graphs():
        for node in graph.nodes:
            for value in node.outputs:
                if value.name:
                    values[value.name] = value
    annotated = 0
    for name, type_proto in found.items():
        value = values.get(name)
        if value is not None and value.shape is None and type_proto.HasField("tensor_type"):
            value.type = type_proto
            annotated += 1
    return annotated


def _collect(graph: onnx.GraphProto, found: dict[str, onnx.TypeProto]) -> None:
    for info in list(graph.value_info) + list(graph.output):
        found.setdefault(info.name, info.type)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _collect(attr.g, found)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    _collect(sub, found)
