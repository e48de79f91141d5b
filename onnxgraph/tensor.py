"""Lazy tensors: initializer data that is read only when asked for.

A :class:`Tensor` is backed by one of three sources:

* an inline ``TensorProto`` from the loaded model: ``numpy()`` wraps its ``raw_data`` bytes as a
  read-only numpy view (no copy beyond the one bytes object protobuf hands out);
* external data: the file is memory-mapped on first access and the array is a view of the map, so
  data that is never looked at is never read;
* a numpy array, for tensors that passes create.

Sizes, dtypes and shapes are known without touching the data.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import threading
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxgraph import types
from onnxgraph.errors import GraphError, ModelLoadError

if TYPE_CHECKING:
    from onnxgraph.value import Value


class MappedFile:
    """A read-only memory map of an external-data file, opened on first use and shared by tensors."""

    __slots__ = ("path", "size", "_map", "_lock")

    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()

    def buffer(self) -> memoryview:
        """The whole file, mapped (zero-copy).

        Raises:
            OSError: the file cannot be opened, or it is empty (it changed after the model was loaded).
        """
        with self._lock:
            if self._map is None:
                with open(self.path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        mapped = self._map
        if mapped is None:  # empty when first mapped, though the model's tensors were checked against its size
            raise OSError(f"file '{self.path}' is empty (it changed after the model was loaded)")
        return memoryview(mapped)

    def view(self, offset: int, length: int) -> memoryview:
        """A zero-copy view of ``length`` bytes at ``offset``."""
        if length == 0:
            return memoryview(b"")
        return self.buffer()[offset : offset + length]


class ExternalLocation:
    """Where a tensor's bytes live in a file: external data, or (``inline``) the ``raw_data`` of an
    initializer inside the model file itself, left there by :func:`onnxgraph.load`."""

    __slots__ = ("file", "offset", "length", "inline")

    def __init__(self, file: MappedFile, offset: int, length: int, *, inline: bool = False):
        self.file = file
        self.offset = offset
        self.length = length
        self.inline = inline


_DIGITS = re.compile(r"[0-9]+")


def check_tensor_proto(proto: onnx.TensorProto, source: str, *, raw_length: int | None = None) -> None:
    """Check that a tensor's element type, shape and data agree, from sizes alone (no data is copied).

    External data is checked by :func:`parse_external_location`. ``raw_length`` is the size of
    ``raw_data`` kept outside ``proto`` (in the file it was loaded from), if any.

    Raises:
        ModelLoadError: an unknown element type, a negative dimension, data of the wrong size, or a
            string that is not UTF-8.
    """
    name = proto.name
    if not types.is_known(proto.data_type):
        raise ModelLoadError(source, f"tensor '{name}' has an unknown element type ({proto.data_type})")
    if any(d < 0 for d in proto.dims):
        raise ModelLoadError(source, f"tensor '{name}' has a negative dimension {list(proto.dims)}")
    if proto.data_location == onnx.TensorProto.EXTERNAL:
        return
    size = math.prod(proto.dims)
    what = f"{types.dtype_name(proto.data_type)}{list(proto.dims)}"
    if proto.data_type == onnx.TensorProto.STRING:
        for i, text in enumerate(proto.string_data):
            try:
                text.decode("utf-8")
            except UnicodeDecodeError:
                raise ModelLoadError(source, f"tensor '{name}': string {i} is not UTF-8") from None
        found, expected, unit = len(proto.string_data), size, "strings"
    elif raw_length is not None or proto.HasField("raw_data"):
        found = len(proto.raw_data) if raw_length is None else raw_length
        expected, unit = types.storage_bytes(proto.data_type, size), "bytes"
    elif types.is_packed(proto.data_type):
        return  # typed fields of packed types hold a varying number of elements per entry
    else:
        field = helper.tensor_dtype_to_field(proto.data_type)
        per_element = 2 if proto.data_type in _COMPLEX else 1
        found, expected, unit = len(getattr(proto, field)), size * per_element, f"values in {field}"
    if found != expected:
        raise ModelLoadError(source, f"tensor '{name}' holds {found} {unit} but {what} needs {expected}")


_COMPLEX = frozenset({onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128})


def external_data_file(base_dir: str, location: str, *, allow_outside: bool = False) -> str:
    """The real path of the external-data file ``location`` of a model in ``base_dir``.

    Args:
        base_dir: the model's folder.
        location: the location recorded in the tensor.
        allow_outside: also accept absolute locations, ``..`` and symbolic links (unsafe: a model could
            make a tool read and copy any file the user can read).

    Raises:
        ValueError: the location leaves the folder or goes through a symbolic link (the message says which).
    """
    lexical = os.path.normpath(os.path.join(base_dir, location))
    real = os.path.realpath(lexical)
    if allow_outside:
        return real
    if not location or os.path.isabs(location) or ".." in location.replace("\\", "/").split("/"):
        raise ValueError("lies outside the model's folder")
    if real != os.path.join(os.path.realpath(base_dir), os.path.normpath(location)):
        raise ValueError("is reached through a symbolic link")
    return real


def parse_external_location(
    proto: onnx.TensorProto,
    base_dir: str,
    files: dict[str, MappedFile],
    source: str,
    *,
    allow_outside: bool = False,
) -> ExternalLocation:
    """Resolve a tensor's external_data entries against ``base_dir`` and check the file holds them.

    Only sizes are checked (the recorded length against the tensor's type and shape, the offset and
    length against the file's size); no data is read.

    Raises:
        ModelLoadError: the location is unsafe or missing, the offset or length is not a whole number or
            does not fit the tensor, or the file is too short.
    """
    name = proto.name
    info = {e.key: e.value for e in proto.external_data}
    location = info.get("location", "")
    try:
        path = external_data_file(base_dir, location, allow_outside=allow_outside)
    except ValueError as exc:
        raise ModelLoadError(
            source, f"tensor '{name}': external data file '{location}' {exc} (--allow-external-data-outside reads it)"
        ) from None
    numbers = {}
    for key in ("offset", "length"):
        text = info.get(key)
        if text is not None and not _DIGITS.fullmatch(text):
            raise ModelLoadError(source, f"tensor '{name}': external data {key} '{text}' is not a whole number")
        numbers[key] = int(text) if text is not None else None
    expected = types.storage_bytes(proto.data_type, math.prod(proto.dims))
    if expected is None:
        raise ModelLoadError(source, f"tensor '{name}': string tensors cannot be stored in external data")
    length = expected if numbers["length"] is None else numbers["length"]
    if length != expected:
        what = f"{types.dtype_name(proto.data_type)}{list(proto.dims)}"
        raise ModelLoadError(
            source, f"tensor '{name}': external data length {length} does not match {what} ({expected} bytes)"
        )
    if path not in files:
        if not os.path.isfile(path):
            raise ModelLoadError(source, f"external data file '{location}' (tensor '{name}') is missing")
        files[path] = MappedFile(path)
    offset = numbers["offset"] or 0
    if offset + length > files[path].size:
        raise ModelLoadError(
            source,
            f"external data file '{location}' is too short for tensor '{name}' ({files[path].size} bytes, "
            f"the tensor needs offset {offset} + length {length})",
        )
    return ExternalLocation(files[path], offset, length)


class Tensor:
    """A constant tensor whose data is loaded lazily.

    Args:
        data: a numpy array (for new tensors); use :meth:`from_proto` for tensors read from ONNX.
        name: the tensor's name.
    """

    __slots__ = ("name", "elem_type", "dims", "_proto", "_array", "_external")

    def __init__(self, data: np.ndarray | None = None, name: str = ""):
        self.name = name
        self.elem_type = 0
        self.dims: tuple[int, ...] = ()
        self._proto: onnx.TensorProto | None = None
        self._external: ExternalLocation | None = None
        self._array: np.ndarray | None = None
        if data is not None:
            array = np.asarray(data)
            self._array = array
            self.elem_type = types.elem_type_of(array.dtype)
            self.dims = tuple(int(d) for d in array.shape)

    @classmethod
    def from_proto(cls, proto: onnx.TensorProto, external: ExternalLocation | None = None) -> Tensor:
        """Wrap a TensorProto without reading its data. ``external`` locates external data."""
        tensor = cls(name=proto.name)
        tensor._proto = proto
        tensor._external = external
        tensor.elem_type = proto.data_type
        tensor.dims = tuple(proto.dims)
        return tensor

    def copy(self) -> Tensor:
        """A new Tensor object over the same data, wherever it lives (nothing is read or copied)."""
        tensor = Tensor(name=self.name)
        tensor.elem_type, tensor.dims = self.elem_type, self.dims
        tensor._proto, tensor._external, tensor._array = self._proto, self._external, self._array
        return tensor

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        """Bytes of data (the raw size; strings count their encoded lengths)."""
        n = types.storage_bytes(self.elem_type, self.size)
        if n is not None:
            return n
        return sum(len(s) for s in self.numpy().ravel().tolist())

    @property
    def is_external(self) -> bool:
        """True when the data lives in an external file."""
        return self._external is not None and not self._external.inline

    @property
    def external_path(self) -> str | None:
        """Absolute path of the external-data file, if any."""
        return self._external.file.path if self.is_external and self._external else None

    @property
    def external_span(self) -> tuple[str, int, int]:
        """``(path, offset, length)`` of external data."""
        span = self.file_span
        if span is None or not self.is_external:
            raise ValueError(f"tensor '{self.name}' has no external data")
        return span

    @property
    def file_span(self) -> tuple[str, int, int] | None:
        """``(path, offset, length)`` of the bytes in a file that back this tensor, unchanged: its external
        data, or its ``raw_data`` in the model file it was loaded from; None for data held in memory."""
        ext = self._external
        return None if ext is None else (ext.file.path, ext.offset, ext.length)

    def same_contents(self, other: Tensor) -> bool:
        """Whether ``other`` holds the same element type, shape and bytes, without reading data when it
        can tell (the same object, or the same unchanged span of the same file)."""
        if other is self:
            return True
        if other.elem_type != self.elem_type or tuple(other.dims) != tuple(self.dims):
            return False
        span = self.file_span
        if span is not None and span == other.file_span:
            return True
        if self.elem_type == onnx.TensorProto.STRING:
            return bool(np.array_equal(self.numpy(), other.numpy()))
        return self.raw_bytes() == other.raw_bytes()

    @property
    def proto(self) -> onnx.TensorProto | None:
        """The source TensorProto, for exporters that keep unchanged tensors as they were."""
        return self._proto

    def raw_bytes(self) -> memoryview | bytes:
        """The tensor's bytes in ONNX raw_data layout (little-endian, sub-byte types packed).

        Not available for string tensors.
        """
        if self.elem_type == onnx.TensorProto.STRING:
            raise TypeError(f"tensor '{self.name}' holds strings and has no raw bytes")
        if self._external is not None:
            ext = self._external
            return ext.file.view(ext.offset, ext.length)
        if self._proto is not None and self._proto.HasField("raw_data"):
            return self._proto.raw_data
        array = self.numpy()
        if types.is_packed(self.elem_type):
            return numpy_helper.from_array(array).raw_data
        return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()

    def numpy(self) -> np.ndarray:
        """The data as a read-only numpy array (a view where the storage allows it)."""
        if self._array is None:
            self._array = self._load()
            self._array.flags.writeable = False
        return self._array

    def _load(self) -> np.ndarray:
        source = self._proto
        if source is None:
            raise ValueError(f"tensor '{self.name}' has no data")
        fast = self.elem_type != onnx.TensorProto.STRING and not types.is_packed(self.elem_type)
        if fast and (self._external is not None or source.HasField("raw_data")):
            dtype = types.np_dtype(self.elem_type).newbyteorder("<")
            return np.frombuffer(self.raw_bytes(), dtype=dtype).reshape(self.dims)
        proto = source
        if self._external is not None:
            proto = onnx.TensorProto()
            proto.CopyFrom(source)
            del proto.external_data[:]
            proto.data_location = onnx.TensorProto.DEFAULT
            proto.raw_data = bytes(self.raw_bytes())
        return numpy_helper.to_array(proto)

    def to_proto(self, name: str | None = None) -> onnx.TensorProto:
        """A self-contained TensorProto (external data is read and inlined).

        An unchanged inline tensor is copied field for field, so nothing about it is lost.
        """
        proto = onnx.TensorProto()
        if self._proto is not None:
            proto.CopyFrom(self._proto)
            if self._external is not None:
                del proto.external_data[:]
                proto.ClearField("data_location")
                proto.raw_data = bytes(self.raw_bytes())
        else:
            proto.CopyFrom(numpy_helper.from_array(self.numpy()))
        target = self.name if name is None else name
        if target != proto.name:
            proto.name = target
        return proto

    def __repr__(self) -> str:
        where = " external" if self.is_external else ""
        return f"Tensor({self.name!r}, {types.dtype_name(self.elem_type)}{list(self.dims)}{where})"


class SparseTensor:
    """A sparse initializer or attribute, kept as its SparseTensorProto (dense views on request)."""

    __slots__ = ("proto",)

    def __init__(self, proto: onnx.SparseTensorProto):
        self.proto = proto

    @property
    def name(self) -> str:
        return self.proto.values.name

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.proto.dims)

    @property
    def elem_type(self) -> int:
        return self.proto.values.data_type

    @property
    def nbytes(self) -> int:
        values = Tensor.from_proto(self.proto.values)
        indices = Tensor.from_proto(self.proto.indices)
        return values.nbytes + indices.nbytes

    def to_proto(self) -> onnx.SparseTensorProto:
        proto = onnx.SparseTensorProto()
        proto.CopyFrom(self.proto)
        return proto


def initializer_tensor(value: Value) -> Tensor:
    """The dense tensor held by ``value``, an entry of a graph's ``initializers`` table.

    Raises:
        GraphError: the value holds no dense tensor (the table's invariant is broken).
    """
    data = value.const_value
    if not isinstance(data, Tensor):
        raise GraphError(f"initializer {value.name!r} holds {type(data).__name__}, not a dense tensor")
    return data
