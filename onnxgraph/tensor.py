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
import threading

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgraph import types
from onnxgraph.errors import ModelLoadError


class MappedFile:
    """A read-only memory map of an external-data file, opened on first use and shared by tensors."""

    __slots__ = ("path", "size", "_map", "_lock")

    def __init__(self, path: str):
        self.path = path
        self.size = os.path.getsize(path)
        self._map: mmap.mmap | None = None
        self._lock = threading.Lock()

    def view(self, offset: int, length: int) -> memoryview:
        """A zero-copy view of ``length`` bytes at ``offset``."""
        with self._lock:
            if self._map is None:
                with open(self.path, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        if length == 0:
            return memoryview(b"")
        return memoryview(self._map)[offset : offset + length]  # type: ignore[index]


class ExternalLocation:
    """Where a tensor's bytes live outside the model file."""

    __slots__ = ("file", "offset", "length")

    def __init__(self, file: MappedFile, offset: int, length: int):
        self.file = file
        self.offset = offset
        self.length = length


def parse_external_location(
    proto: onnx.TensorProto, base_dir: str, files: dict[str, MappedFile], source: str
) -> ExternalLocation:
    """Resolve a tensor's external_data entries against ``base_dir`` and check the file holds them.

    Raises:
        ModelLoadError: the file is missing, escapes the model's folder, or is too short.
    """
    info = {e.key: e.value for e in proto.external_data}
    location = info.get("location", "")
    path = os.path.normpath(os.path.join(base_dir, location))
    if not location or os.path.isabs(location) or ".." in location.replace("\\", "/").split("/"):
        raise ModelLoadError(source, f"tensor '{proto.name}' has an unsafe external data location '{location}'")
    offset = int(info.get("offset", 0) or 0)
    length = int(info["length"]) if info.get("length") else types.storage_bytes(proto.data_type, math.prod(proto.dims))
    if path not in files:
        if not os.path.isfile(path):
            raise ModelLoadError(source, f"external data file '{location}' (tensor '{proto.name}') is missing")
        files[path] = MappedFile(path)
    if length is None or offset + length > files[path].size:
        raise ModelLoadError(
            source, f"external data file '{location}' is too short for tensor '{proto.name}'"
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
        return self._external is not None

    @property
    def external_path(self) -> str | None:
        """Absolute path of the external-data file, if any."""
        return self._external.file.path if self._external else None

    @property
    def external_span(self) -> tuple[str, int, int]:
        """``(path, offset, length)`` of external data."""
        ext = self._external
        return ext.file.path, ext.offset, ext.length

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
        fast = self.elem_type != onnx.TensorProto.STRING and not types.is_packed(self.elem_type)
        if fast and (self._external is not None or self._proto.HasField("raw_data")):
            dtype = types.np_dtype(self.elem_type).newbyteorder("<")
            return np.frombuffer(self.raw_bytes(), dtype=dtype).reshape(self.dims)
        proto = self._proto
        if self._external is not None:
            proto = onnx.TensorProto()
            proto.CopyFrom(self._proto)
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
            proto.CopyFrom(numpy_helper.from_array(self._array))
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
