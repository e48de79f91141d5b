"""Writing an .npz archive one array at a time, atomically (``numpy.savez`` needs every array at once)."""

from __future__ import annotations

import os
import zipfile
from types import TracebackType

import numpy as np

from onnxgraph.fsutil import AtomicFileGroup


class NpzWriter:
    """An .npz file that ``numpy.load`` reads, filled array by array; it appears only when complete.

    Args:
        path: the destination; left as it was when the block raises.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._group = AtomicFileGroup()
        self._file = self._group.open(path)
        self._zip = zipfile.ZipFile(self._file, "w", allowZip64=True)
        self._names: set[str] = set()

    def add(self, name: str, array: np.ndarray) -> None:
        """Write ``array`` under ``name`` (a name already written is skipped)."""
        if name in self._names:
            return
        self._names.add(name)
        with self._zip.open(name + ".npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)

    def __enter__(self) -> NpzWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._zip.close()
        self._file.close()
        if kind is None:
            self._group.commit()
        else:
            self._group.discard()
