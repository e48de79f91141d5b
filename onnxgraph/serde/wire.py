"""The protobuf wire format, just enough to find and splice fields without parsing their contents.

Loading and saving use it to keep the weights of a model out of protobuf messages: a ``.onnx`` file
is scanned for the ``raw_data`` of its initializers (left in place in a memory map), and a model is
written as a small serialized skeleton with the weights' bytes spliced in (see
:mod:`onnxgraph.serde.mapped` and :mod:`onnxgraph.serde.streamed`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from onnxgraph.errors import WireFormatError

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5

MODEL_GRAPH = 7
"""``ModelProto.graph``."""
GRAPH_INITIALIZER = 5
"""``GraphProto.initializer``."""
TENSOR_RAW_DATA = 9
"""``TensorProto.raw_data``."""
TENSOR_EXTERNAL_DATA = 13
"""``TensorProto.external_data``."""
TENSOR_DATA_LOCATION = 14
"""``TensorProto.data_location``."""


class Field(NamedTuple):
    """One field of a message: its number, wire type and where it lies in the buffer.

    ``start`` is where the field's tag begins, ``value_start:end`` its payload (for a length-delimited
    field, the bytes after the length).
    """

    number: int
    wire_type: int
    start: int
    value_start: int
    end: int


def read_varint(buffer: memoryview, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it.

    Raises:
        WireFormatError: the varint runs past ``end`` or over ten bytes.
    """
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireFormatError(f"malformed varint at byte {pos}")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def fields(buffer: memoryview, start: int, end: int) -> Iterator[Field]:
    """The fields of the message in ``buffer[start:end]``, in file order (contents not parsed).

    Raises:
        WireFormatError: a field is truncated or uses the deprecated group wire types.
    """
    pos = start
    while pos < end:
        tag, value_start = read_varint(buffer, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == VARINT:
            _, stop = read_varint(buffer, value_start, end)
        elif wire_type == FIXED64:
            stop = value_start + 8
        elif wire_type == FIXED32:
            stop = value_start + 4
        elif wire_type == LENGTH_DELIMITED:
            length, value_start = read_varint(buffer, value_start, end)
            stop = value_start + length
        else:
            raise WireFormatError(f"unsupported wire type {wire_type} at byte {pos}")
        if number == 0 or stop > end:
            raise WireFormatError(f"field {number} at byte {pos} is truncated or invalid")
        yield Field(number, wire_type, pos, value_start, stop)
        pos = stop


def encode_varint(value: int) -> bytes:
    """``value`` (non-negative) as a varint."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def length_header(number: int, length: int) -> bytes:
    """Tag and length of a length-delimited field ``number`` holding ``length`` bytes."""
    return encode_varint(number << 3 | LENGTH_DELIMITED) + encode_varint(length)


def varint_field(number: int, value: int) -> bytes:
    """A whole varint field."""
    return encode_varint(number << 3 | VARINT) + encode_varint(value)
