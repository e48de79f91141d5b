"""Weightless copies of a model for proto-level tools (version converter, shape inference, printer).

``detach`` exports a model with its large float tensors replaced by external-data references to
placeholder locations, so onnx's C++ tools never copy the weights and never meet the 2 GB protobuf
limit. ``reattach`` imports the (transformed) proto back, handing each placeholder its original lazy
tensor again.

>>> proto, weights = detach(model)                                   # doctest: +SKIP
>>> proto = onnx.version_converter.convert_version(proto, 21)       # doctest: +SKIP
>>> model = reattach(proto, weights)                                 # doctest: +SKIP
"""

from __future__ import annotations

import onnx

from onnxgraph import types
from onnxgraph.model import Model
from onnxgraph.serde.exporter import export_model
from onnxgraph.serde.external import metadata_only
from onnxgraph.serde.importer import import_model
from onnxgraph.tensor import Tensor

PLACEHOLDER_PREFIX = "onnxgraph-detached:"
DETACH_THRESHOLD = 1024
"""Float tensors of at least this many bytes are detached; smaller ones (shapes, axes, scales) stay
inline because converters and shape inference read their values."""


def detach(model: Model, *, ir_version: int | None = None) -> tuple[onnx.ModelProto, dict[str, Tensor]]:
    """Export ``model`` without the data of its large float tensors.

    Returns:
        The proto and the tensors its placeholder locations stand for.
    """
    weights: dict[str, Tensor] = {}

    def sink(tensor: Tensor, name: str) -> onnx.TensorProto:
        if tensor.elem_type not in types.FLOAT_TYPES or tensor.nbytes < DETACH_THRESHOLD:
            return tensor.to_proto(name)
        location = f"{PLACEHOLDER_PREFIX}{len(weights)}"
        weights[location] = tensor
        proto = metadata_only(tensor, name)
        proto.data_location = onnx.TensorProto.EXTERNAL
        entry = proto.external_data.add()
        entry.key, entry.value = "location", location
        return proto

    return export_model(model, sink, ir_version=ir_version), weights


def reattach(proto: onnx.ModelProto, weights: dict[str, Tensor], *, like: Model | None = None) -> Model:
    """Import ``proto`` (a transformed :func:`detach` result), restoring the detached tensors.

    Args:
        proto: the weightless proto.
        weights: the tensors :func:`detach` returned.
        like: the model ``proto`` came from; its external-data files stay open for the new model.
    """
    model = import_model(proto, source="<converted>", detached=weights)
    if like is not None:
        model.external_files = dict(like.external_files)
    return model
