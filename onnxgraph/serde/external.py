"""Writing tensor data to an external-data file beside the model, streamed tensor by tensor."""

from __future__ import annotations

from typing import BinaryIO

import onnx

from onnxgraph.fsutil import copy_file_span
from onnxgraph.serde.fields import copy_field
from onnxgraph.tensor import Tensor

_DATA_FIELDS = frozenset(
    {
        "raw_data",
        "float_data",
        "int32_data",
        "string_data",
        "int64_data",
        "double_data",
        "uint64_data",
        "external_data",
        "data_location",
    }
)
_PAGE = 4096
_SMALL_ALIGN = 64
_CHUNK = 64 << 20


def has_data(proto: onnx.TensorProto) -> bool:
    """Whether a TensorProto carries its data (inline or as an external reference), unlike what
    :func:`metadata_only` makes."""
    return any(field.name in _DATA_FIELDS for field, _ in proto.ListFields())


def metadata_only(tensor: Tensor, name: str) -> onnx.TensorProto:
    """A TensorProto with the tensor's name, type, dims and annotations but no data."""
    proto = onnx.TensorProto()
    source = tensor.proto
    if source is not None:
        for field, value in source.ListFields():
            if field.name not in _DATA_FIELDS:
                copy_field(proto, field, value)
    else:
        proto.data_type = tensor.elem_type
        proto.dims.extend(tensor.dims)
    if proto.name != name:
        proto.name = name
    return proto


def write_tensor_bytes(tensor: Tensor, file: BinaryIO) -> None:
    """Append the tensor's bytes in ``raw_data`` layout to ``file``: bytes backed by a file are copied
    file to file in the kernel where possible (no pages mapped into this process), others in chunks."""
    span = tensor.file_span
    if span is not None and copy_file_span(*span, file):
        return
    data = memoryview(tensor.raw_bytes()).cast("B")
    for begin in range(0, len(data), _CHUNK):
        file.write(data[begin : begin + _CHUNK])


class ExternalDataWriter:
    """A tensor sink that appends tensors to one data file and returns external references.

    Args:
        file: the open data file (written sequentially).
        location: the file name recorded in the model, relative to the model's folder.
        threshold: tensors smaller than this many bytes stay inline.
        keep_inline_tensors: keep tensors that were inline in the source inline (used to preserve
            a model's layout); new and external tensors still go to the file.
    """

    def __init__(self, file: BinaryIO, location: str, *, threshold: int = 1024, keep_inline_tensors: bool = False):
        self.file = file
        self.location = location
        self.threshold = threshold
        self.keep_inline_tensors = keep_inline_tensors
        self.offset = 0

    def keeps_inline(self, tensor: Tensor) -> bool:
        """Whether this sink leaves ``tensor`` inline in the model rather than in the data file."""
        if tensor.elem_type == onnx.TensorProto.STRING or tensor.nbytes < self.threshold:
            return True
        return self.keep_inline_tensors and not tensor.is_external and tensor.proto is not None

    def __call__(self, tensor: Tensor, name: str) -> onnx.TensorProto:
        if self.keeps_inline(tensor):
            return tensor.to_proto(name)
        length = tensor.external_span[2] if tensor.is_external else tensor.nbytes
        padding = -self.offset % (_PAGE if length >= (1 << 20) else _SMALL_ALIGN)
        if padding:
            self.file.write(b"\0" * padding)
            self.offset += padding
        start = self.offset
        write_tensor_bytes(tensor, self.file)
        self.offset += length
        proto = metadata_only(tensor, name)
        proto.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", self.location), ("offset", str(start)), ("length", str(length))):
            entry = proto.external_data.add()
            entry.key, entry.value = key, value
        return proto
