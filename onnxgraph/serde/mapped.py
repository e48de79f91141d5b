"""Loading a ``.onnx`` file whose weights stay where they are: in a memory map of the file.

Protobuf would copy every initializer's ``raw_data`` into the parsed message (and Python would copy
it again on each access). Instead the file is memory-mapped and scanned at the wire level: each
main-graph initializer whose ``raw_data`` holds at least :data:`MAPPED_THRESHOLD` bytes is cut out of
a small *skeleton* copy of the model, which is what protobuf parses, and becomes a :class:`Tensor`
viewing its bytes in the map. Pages of the weights are read only when something looks at them, and a
save copies unchanged ones file to file (see :mod:`onnxgraph.serde.streamed`).
"""

from __future__ import annotations

import os

import onnx
from google.protobuf.message import DecodeError

from onnxgraph import types
from onnxgraph.errors import WireFormatError
from onnxgraph.serde import wire
from onnxgraph.serde.detached import PLACEHOLDER_PREFIX
from onnxgraph.tensor import ExternalLocation, MappedFile, Tensor, check_tensor_proto

MAPPED_THRESHOLD = 1024
"""Initializers with at least this many bytes of ``raw_data`` are left in the map."""


def read_skeleton(path: str, *, placeholders: bool = True) -> tuple[bytes, dict[str, Tensor]] | None:
    """The model file at ``path`` without the ``raw_data`` of its large main-graph initializers.

    Args:
        path: the model file.
        placeholders: make each cut-out initializer refer to its placeholder location; without, it
            keeps only its type, shape and name (for readers that need no tensor data).

    Returns:
        ``(skeleton, tensors)``: the serialized model in which each cut-out initializer refers to a
        placeholder external-data location instead, and the tensors (views of the map) those locations
        stand for, ready for :func:`onnxgraph.serde.importer.import_model`'s ``detached``. None when
        the file has no such initializer or is not a well-formed message (the caller parses it whole,
        which reports what is wrong).

    Raises:
        ModelLoadError: a cut-out tensor's type, shape and data size disagree.
        OSError: the file cannot be mapped.
    """
    mapped = MappedFile(os.path.abspath(path))
    buffer = mapped.buffer()
    try:
        return _cut(buffer, mapped, path, placeholders)
    except (WireFormatError, DecodeError):
        return None
    finally:
        buffer.release()


def _cut(
    buffer: memoryview, mapped: MappedFile, source: str, placeholders: bool
) -> tuple[bytes, dict[str, Tensor]] | None:
    graphs = [f for f in wire.fields(buffer, 0, len(buffer)) if f.number == wire.MODEL_GRAPH]
    if len(graphs) != 1 or graphs[0].wire_type != wire.LENGTH_DELIMITED:
        return None  # protobuf merges repeated occurrences of a message field: leave that to it
    graph = graphs[0]
    tensors: dict[str, Tensor] = {}
    pieces: list[bytes | memoryview] = []
    copied_to = graph.value_start  # graph bytes before this are already in `pieces`
    for field in wire.fields(buffer, graph.value_start, graph.end):
        if field.number != wire.GRAPH_INITIALIZER or field.wire_type != wire.LENGTH_DELIMITED:
            continue
        location = f"{PLACEHOLDER_PREFIX}{len(tensors)}" if placeholders else None
        cut = _cut_tensor(buffer, field, mapped, location, source)
        if cut is None:
            continue
        placeholder, tensor = cut
        tensors[f"{PLACEHOLDER_PREFIX}{len(tensors)}"] = tensor
        pieces += [buffer[copied_to : field.start], wire.length_header(wire.GRAPH_INITIALIZER, len(placeholder))]
        pieces.append(placeholder)
        copied_to = field.end
    if not tensors:
        return None
    pieces.append(buffer[copied_to : graph.end])
    graph_bytes = b"".join(pieces)
    header = wire.length_header(wire.MODEL_GRAPH, len(graph_bytes))
    skeleton = b"".join((buffer[: graph.start], header, graph_bytes, buffer[graph.end :]))
    return skeleton, tensors


def _cut_tensor(
    buffer: memoryview, field: wire.Field, mapped: MappedFile, location: str | None, source: str
) -> tuple[bytes, Tensor] | None:
    """An initializer without its ``raw_data`` (pointing to ``location`` instead, if given) and the
    tensor viewing that data in the map; None when it is small, has no ``raw_data`` or is not plain
    inline data."""
    raw: wire.Field | None = None
    for part in wire.fields(buffer, field.value_start, field.end):
        if part.number in (wire.TENSOR_EXTERNAL_DATA, wire.TENSOR_DATA_LOCATION):
            return None
        if part.number == wire.TENSOR_RAW_DATA:
            if raw is not None:  # repeated: protobuf keeps the last one; leave that to it
                return None
            raw = part
    if raw is None or raw.wire_type != wire.LENGTH_DELIMITED or raw.end - raw.value_start < MAPPED_THRESHOLD:
        return None
    stripped = b"".join((buffer[field.value_start : raw.start], buffer[raw.end : field.end]))
    proto = onnx.TensorProto.FromString(stripped)
    length = raw.end - raw.value_start
    if proto.data_type == onnx.TensorProto.STRING or not types.is_known(proto.data_type):
        return None  # the importer's checks name the problem
    check_tensor_proto(proto, source, raw_length=length)
    tensor = Tensor.from_proto(proto, ExternalLocation(mapped, raw.value_start, length, inline=True))
    if location is None:
        return stripped, tensor
    entry = wire.length_header(1, len("location")) + b"location"
    entry += wire.length_header(2, len(location.encode())) + location.encode()
    placeholder = stripped + wire.length_header(wire.TENSOR_EXTERNAL_DATA, len(entry)) + entry
    placeholder += wire.varint_field(wire.TENSOR_DATA_LOCATION, onnx.TensorProto.EXTERNAL)
    return placeholder, tensor
