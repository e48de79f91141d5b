"""One check, made before any work, that a command's written files destroy nothing it reads.

Every command that writes files calls :func:`check_outputs` with what it will write and what it reads.
It refuses (:class:`~onnxgraph.errors.OutputPathError`) when

* a written file (a model, the external-data file saved beside it, a report) is the input model or a
  file the input reads (its external data, other inputs), compared by real path and, for existing
  files, by device and inode so hard links count; replacing the input model itself is allowed with
  ``overwrite``, its external-data files never;
* two written files are the same file (``--report-json`` equal to ``-o``);
* a destination is a folder, lies in a folder that does not exist or cannot be written.

Destinations that are not regular files (``/dev/null``, ``/dev/stdout``, FIFOs) pass: the atomic-write
helpers write through them instead of replacing them (:func:`onnxgraph.fsutil.write_target`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import onnx

from onnxgraph.errors import OutputPathError
from onnxgraph.fsutil import write_target
from onnxgraph.serde.fileio import data_file_name, read_proto


@dataclass(frozen=True)
class Output:
    """A file a command is about to write.

    Args:
        path: the destination as the user gave it; None or ``-`` (standard output) are skipped.
        option: how the user named it, for messages (``-o``, ``--report-json``).
        model: a model, so :func:`onnxgraph.save` may also write its external-data file beside it.
    """

    path: str | None
    option: str
    model: bool = False


@dataclass(frozen=True)
class _Written:
    label: str
    target: str
    through: bool
    model_output: bool


def check_outputs(
    outputs: Sequence[Output],
    *,
    models: Sequence[str] = (),
    reads: Sequence[str] = (),
    overwrite: bool = False,
) -> None:
    """Refuse, before any work, to write a file that is read, written twice, or cannot be written.

    Args:
        outputs: the files the command writes.
        models: input model paths (their external-data files count as read too).
        reads: other files the command reads (JSON, npz).
        overwrite: allow a model output to replace an input model (never its external data).

    Raises:
        OutputPathError: naming the option, the file and the conflict.
        ModelLoadError: an input model that needs to be looked into cannot be read.
    """
    written = list(_written(outputs))
    for w in written:
        _check_writable(w)
    seen: dict[tuple, _Written] = {}
    for w in written:
        if w.through:
            continue
        key = _identity(w.target)
        if key in seen:
            raise OutputPathError(f"{seen[key].label} and {w.label} are the same file; choose different names")
        seen[key] = w
    existing = [w for w in written if not w.through and os.path.exists(w.target)]
    if not existing:
        return  # files that do not exist yet cannot be inputs
    for path, what, is_model in _read_files(models, reads):
        key = _identity(path)
        for w in existing:
            if _identity(w.target) != key:
                continue
            if is_model and w.model_output and overwrite:
                continue
            hint = " (pass --overwrite to allow it)" if is_model and w.model_output else ""
            raise OutputPathError(f"{w.label}: refusing to overwrite {what}{hint}")


def _written(outputs: Sequence[Output]) -> Iterator[_Written]:
    for out in outputs:
        if out.path is None or out.path == "-":
            continue
        target, through = write_target(out.path)
        label = f"{out.option} {out.path}"
        yield _Written(label, target, through, out.model)
        if out.model and not through:
            data = os.path.join(os.path.dirname(target), data_file_name(target))
            yield _Written(f"{label} (its external data file {os.path.basename(data)})", data, False, False)


def _check_writable(w: _Written) -> None:
    if w.through:
        if not os.access(w.target, os.W_OK):
            raise OutputPathError(f"{w.label}: is not writable")
        return
    if os.path.isdir(w.target):
        raise OutputPathError(f"{w.label}: is a folder")
    folder = os.path.dirname(w.target)
    if not os.path.isdir(folder):
        raise OutputPathError(f"{w.label}: folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{w.label}: folder '{folder}' is not writable")


def _identity(path: str) -> tuple:
    """Device and inode of an existing file (hard links share them), else its real path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


def _read_files(models: Sequence[str], reads: Sequence[str]) -> Iterator[tuple[str, str, bool]]:
    """``(path, description, is_model)`` of every file the command reads."""
    for model in models:
        yield model, f"the input model {model}", True
        folder = os.path.dirname(os.path.abspath(model))
        for location in sorted(_external_locations(read_proto(model, tensor_data=False))):
            path = os.path.realpath(os.path.join(folder, location))
            yield path, f"the external data file '{location}' of the input model {model}", False
    for path in reads:
        yield path, f"the input {path}", False


def _external_locations(proto: onnx.ModelProto) -> set[str]:
    """Every external-data location the tensors of ``proto`` refer to (subgraphs and functions included)."""
    found: set[str] = set()

    def tensor(t: onnx.TensorProto) -> None:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            found.update(e.value for e in t.external_data if e.key == "location")

    def graph(g: onnx.GraphProto) -> None:
        for t in g.initializer:
            tensor(t)
        for s in g.sparse_initializer:
            tensor(s.values)
            tensor(s.indices)
        nodes(g.node)

    def nodes(ns) -> None:
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                for t in a.tensors:
                    tensor(t)
                if a.HasField("g"):
                    graph(a.g)
                for g in a.graphs:
                    graph(g)

    graph(proto.graph)
    for f in proto.functions:
        nodes(f.node)
    for info in proto.training_info:
        graph(info.initialization)
        graph(info.algorithm)
    return found
