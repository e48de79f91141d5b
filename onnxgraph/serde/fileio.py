"""Reading and writing model files: ``load``, ``from_proto`` and ``save``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import onnx
from google.protobuf.message import DecodeError

from onnxgraph.errors import ModelLoadError, ModelSaveError
from onnxgraph.fsutil import AtomicFileGroup, new_file_mode, write_target
from onnxgraph.model import Model
from onnxgraph.serde.exporter import export_model, inline_sink
from onnxgraph.serde.external import ExternalDataWriter
from onnxgraph.serde.importer import import_model
from onnxgraph.serde.mapped import read_skeleton
from onnxgraph.serde.streamed import StreamedInitializers, write_model
from onnxgraph.serde.text import is_text_path, parse_text, print_text
from onnxgraph.tensor import Tensor, initializer_tensor

PROTOBUF_LIMIT = 2**31 - 1
"""Protobuf refuses to serialize messages of 2 GiB or more."""
_HEADROOM = 64 << 20


def _read_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise ModelLoadError(path, "no such file")
    if os.path.isdir(path):
        raise ModelLoadError(path, "is a directory, not a model file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ModelLoadError(path, f"cannot be read ({exc.strerror or exc})") from exc
    if not data:
        raise ModelLoadError(path, "is empty")
    return data


def _parse(data: bytes, source: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(source, "is not an ONNX model (truncated or not protobuf)") from exc
    if not proto.HasField("graph") or proto.ir_version <= 0:
        raise ModelLoadError(source, "is not an ONNX model (no graph or IR version)")
    return proto


def read_proto(path: str | os.PathLike, *, tensor_data: bool = True) -> onnx.ModelProto:
    """The ModelProto in the file ``path`` (ONNX text for ``.onnxtxt``), external data not read.

    Args:
        path: the model file.
        tensor_data: read the data of the main graph's inline initializers; without, large ones come
            with their type, shape and name only (for readers of the structure: far less memory).

    Raises:
        ModelLoadError: the file is missing, empty or not an ONNX model.
    """
    path = os.fspath(path)
    cut = None if tensor_data else _read_mapped(path, placeholders=False)
    if cut is not None:
        return _parse(cut[0], path)
    data = _read_bytes(path)
    return parse_text(data, path) if is_text_path(path) else _parse(data, path)


def load(
    source: str | os.PathLike | bytes | onnx.ModelProto,
    *,
    base_dir: str | None = None,
    allow_external_data_outside: bool = False,
) -> Model:
    """Load a model from a file path, serialized bytes, or a ModelProto.

    Tensor data is not read: inline data is wrapped lazily and external data is memory-mapped on
    first access. Every tensor's type, shape and data size are checked against each other. A path
    ending in ``.onnxtxt`` is read as ONNX text (onnx.parser).

    Args:
        source: the model.
        base_dir: where to find external-data files (default: the model file's folder).
        allow_external_data_outside: accept external-data locations outside the model's folder or
            behind symbolic links. Unsafe for models from others: the model decides which of the
            user's files get read (and copied into anything written from it).

    Returns:
        The model's IR.

    Raises:
        ModelLoadError: the file is missing, empty, not ONNX, its external data is missing, too
            short or outside the model's folder, a tensor's type, shape and data disagree, or its
            graph is malformed (dangling reference, value written twice, cycle).
    """
    outside = allow_external_data_outside
    if isinstance(source, onnx.ModelProto):
        return from_proto(source, base_dir=base_dir, allow_external_data_outside=outside)
    if isinstance(source, bytes | bytearray | memoryview):
        return import_model(
            _parse(bytes(source), "<bytes>"), source="<bytes>", base_dir=base_dir, allow_external_data_outside=outside
        )
    path = os.fspath(source)
    folder = base_dir if base_dir is not None else os.path.dirname(os.path.abspath(path))
    cut = _read_mapped(path)
    if cut is not None:  # the large initializers stay in a memory map of the file
        skeleton, tensors = cut
        proto = _parse(skeleton, path)
        del skeleton
        return import_model(proto, source=path, base_dir=folder, detached=tensors, allow_external_data_outside=outside)
    proto = read_proto(path)
    return import_model(proto, source=path, base_dir=folder, allow_external_data_outside=outside)


def _read_mapped(path: str, *, placeholders: bool = True) -> tuple[bytes, dict[str, Tensor]] | None:
    """:func:`onnxgraph.serde.mapped.read_skeleton` of a binary model file, or None where it does not
    apply (ONNX text, a file that cannot be mapped); :func:`read_proto` then reports any problem."""
    if is_text_path(path) or not os.path.isfile(path):
        return None
    try:
        return read_skeleton(path, placeholders=placeholders)
    except OSError:  # not mappable (empty, a FIFO...): read as bytes
        return None


def from_proto(
    proto: onnx.ModelProto, *, base_dir: str | None = None, allow_external_data_outside: bool = False
) -> Model:
    """Build the IR of an in-memory ModelProto (``base_dir`` resolves external data, if any)."""
    if not proto.HasField("graph"):
        raise ModelLoadError("<ModelProto>", "is not an ONNX model (it has no graph)")
    return import_model(
        proto, source="<ModelProto>", base_dir=base_dir, allow_external_data_outside=allow_external_data_outside
    )


def _initializer_tensors(model: Model) -> Iterator[Tensor]:
    for graph in model.all_graphs():
        for value in graph.initializers.values():
            yield initializer_tensor(value)


def _inline_bytes(model: Model) -> int:
    total = sum(tensor.nbytes for tensor in _initializer_tensors(model))
    for node in model.all_nodes():
        for attr in node.attributes.values():
            if attr.type == onnx.AttributeProto.TENSOR and attr.value is not None:
                total += attr.value.nbytes
    return total


def _has_external(model: Model) -> bool:
    return any(tensor.is_external for tensor in _initializer_tensors(model))


def _has_tensor_over(model: Model, threshold: int) -> bool:
    if any(tensor.nbytes >= threshold for tensor in _initializer_tensors(model)):
        return True
    return any(
        attr.type == onnx.AttributeProto.TENSOR and attr.value is not None and attr.value.nbytes >= threshold
        for node in model.all_nodes()
        for attr in node.attributes.values()
    )


def data_file_name(path: str | os.PathLike, external_data: str | bool | None = None) -> str:
    """The external-data file name :func:`save` uses for ``path`` (written beside it when needed)."""
    if isinstance(external_data, str) and external_data != "auto":
        return external_data
    return os.path.basename(os.fspath(path)) + ".data"


def save(
    model: Model,
    path: str | os.PathLike,
    *,
    external_data: str | bool | None = None,
    size_threshold: int = 1024,
    ir_version: int | None = None,
) -> None:
    """Write ``model`` to ``path`` atomically (with its external-data file, if any).

    A path ending in ``.onnxtxt`` is written as ONNX text (onnx.printer); tensors of at least
    ``size_threshold`` bytes then go to ``<file>.data`` rather than into the text.

    Args:
        model: the model.
        path: destination ``.onnx`` (or ``.onnxtxt``) file.
        external_data: where tensor data goes.
            None: keep each tensor where it was (inline stays inline, external data goes to
            ``<file>.data``), switching to "auto" when the model would not fit a 2 GB protobuf.
            "auto": every tensor of at least ``size_threshold`` bytes goes to ``<file>.data``.
            False: every tensor inline (ModelSaveError when that would exceed 2 GB).
            any other string: like "auto", into that file name (relative to the model's folder).
        size_threshold: smallest tensor, in bytes, written to external data.
        ir_version: the IR version to write (default: the model's own).

    A destination that is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO) is written
    through, never replaced, and gets a self-contained model (every tensor inline).

    Raises:
        ModelSaveError: the destination cannot be written or the model is too large to save inline.
    """
    path = os.fspath(path)
    target, write_through = write_target(path)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise ModelSaveError(f"{path}: folder '{folder}' does not exist")
    text = is_text_path(path)
    too_big = _inline_bytes(model) + _HEADROOM >= PROTOBUF_LIMIT
    if write_through:  # a device or stream: nothing can be written beside it
        if external_data not in (None, False, "auto"):
            raise ModelSaveError(f"{path}: is not a regular file, so no external data file can go beside it")
        if too_big:
            raise ModelSaveError(f"{path}: is not a regular file and the model needs external data (over 2 GB)")
        external_data = False
    if external_data is False and too_big:
        raise ModelSaveError(f"{path}: the tensors do not fit in one 2 GB protobuf; keep external data")
    if text and external_data is None:
        external_data = "auto" if _has_tensor_over(model, size_threshold) else False
    keep_layout = external_data is None and not too_big
    use_external = external_data is not False and (external_data is not None or too_big or _has_external(model))
    if use_external and not keep_layout and not _has_tensor_over(model, size_threshold):
        use_external = False  # nothing would go to the data file
    location = data_file_name(target, external_data)
    if os.path.basename(location) != location:
        raise ModelSaveError(f"{path}: external data file '{location}' must be a plain file name")
    files = AtomicFileGroup()
    try:
        if use_external:
            # the weights get the model's permissions: whoever can read the model can read them
            with files.open(os.path.join(folder, location), mode=new_file_mode(target)) as data_file:
                writer = ExternalDataWriter(
                    data_file, location, threshold=size_threshold, keep_inline_tensors=keep_layout
                )
                streamed = StreamedInitializers(writer, writer.keeps_inline)
                proto = export_model(model, writer, ir_version=ir_version, initializer_sink=None if text else streamed)
        else:
            streamed = StreamedInitializers(inline_sink)
            proto = export_model(model, ir_version=ir_version, initializer_sink=None if text else streamed)
        with files.open(path) as f:
            if text:
                f.write(print_text(proto).encode("utf-8"))
            else:  # inline weights go from where they are to the file, one at a time
                write_model(f, proto, streamed.tensors)
        files.commit()
    except OSError as exc:
        files.discard()
        raise ModelSaveError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    except BaseException:
        files.discard()
        raise
