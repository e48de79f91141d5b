"""Writing a model file with its inline weights streamed: never one ModelProto holding them all.

Export makes a *skeleton*: the model with the main graph's large inline initializers present but
empty (type, shape, name; no ``raw_data``). The skeleton is serialized (small), and the file is written
from it with each initializer's ``raw_data`` field spliced in where protobuf would have put it and the
lengths of the enclosing messages grown to match. Weights go straight from where they are (a memory map
of the source file, copied in the kernel, or an array) to the file, one at a time; the result has the
same bytes as serializing the whole ModelProto.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO

import onnx

from onnxgraph.serde import wire
from onnxgraph.serde.exporter import TensorSink
from onnxgraph.serde.external import metadata_only, write_tensor_bytes
from onnxgraph.tensor import Tensor

STREAMED_THRESHOLD = 1024
"""Inline initializers of at least this many bytes are streamed rather than put in the proto."""


class StreamedInitializers:
    """An initializer sink (see :func:`onnxgraph.serde.exporter.export_model`) that leaves large inline
    tensors empty in the proto and remembers them for :func:`write_model`.

    Args:
        sink: the sink for every other tensor.
        inline: whether ``sink`` would keep a tensor inline (only those are streamed).
    """

    def __init__(self, sink: TensorSink, inline: Callable[[Tensor], bool] = lambda tensor: True):
        self.sink = sink
        self.inline = inline
        self.tensors: dict[int, Tensor] = {}
        self._count = 0

    def __call__(self, tensor: Tensor, name: str) -> onnx.TensorProto:
        index = self._count
        self._count += 1
        if self._streamable(tensor):
            self.tensors[index] = tensor
            return metadata_only(tensor, name)
        return self.sink(tensor, name)

    def _streamable(self, tensor: Tensor) -> bool:
        if tensor.elem_type == onnx.TensorProto.STRING or tensor.nbytes < STREAMED_THRESHOLD:
            return False
        source = tensor.proto
        # data held in typed fields (float_data...) is left to the proto, which keeps it as it was
        in_raw_layout = source is None or tensor.file_span is not None or source.HasField("raw_data")
        return in_raw_layout and self.inline(tensor)


def write_model(file: BinaryIO, proto: onnx.ModelProto, tensors: dict[int, Tensor]) -> None:
    """Write ``proto`` to ``file`` with ``tensors[n]`` as the ``raw_data`` of ``graph.initializer[n]``.

    Args:
        file: the destination, written sequentially.
        proto: the skeleton (those initializers without data).
        tensors: the data, by initializer index (:attr:`StreamedInitializers.tensors`).
    """
    skeleton = memoryview(proto.SerializeToString())
    if not tensors:
        file.write(skeleton)
        return
    graph = next(f for f in wire.fields(skeleton, 0, len(skeleton)) if f.number == wire.MODEL_GRAPH)
    pieces: list[bytes | memoryview | Tensor] = []
    graph_length = 0
    index = 0
    copied_to = graph.value_start
    for field in wire.fields(skeleton, graph.value_start, graph.end):
        if field.number != wire.GRAPH_INITIALIZER:
            continue
        tensor = tensors.get(index)
        index += 1
        if tensor is None:
            continue
        # raw_data goes before the first field numbered above it, as protobuf orders fields
        split = next(
            (f.start for f in wire.fields(skeleton, field.value_start, field.end) if f.number > wire.TENSOR_RAW_DATA),
            field.end,
        )
        length = tensor.nbytes
        raw_header = wire.length_header(wire.TENSOR_RAW_DATA, length)
        tensor_length = field.end - field.value_start + len(raw_header) + length
        header = wire.length_header(wire.GRAPH_INITIALIZER, tensor_length)
        framing = (skeleton[copied_to : field.start], header, skeleton[field.value_start : split], raw_header)
        pieces += framing
        graph_length += sum(len(piece) for piece in framing)
        pieces.append(tensor)
        graph_length += length
        copied_to = split
    pieces.append(skeleton[copied_to : graph.end])
    graph_length += graph.end - copied_to
    file.write(skeleton[: graph.start])
    file.write(wire.length_header(wire.MODEL_GRAPH, graph_length))
    for piece in pieces:
        if isinstance(piece, Tensor):
            write_tensor_bytes(piece, file)
        else:
            file.write(piece)
    file.write(skeleton[graph.end :])
