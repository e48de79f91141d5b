"""Training data: named arrays from an ``.npz`` file or a folder of ``.npy`` files, memory-mapped,
and the batch order as a pure function of (seed, global step).

Rows are the first axis of every array. Epoch ``e`` visits the rows in the order
``numpy.random.default_rng([seed, e]).permutation(rows)``, so any step's batch can be found again
without replaying the run (resuming, or a data-parallel rank picking its share).
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from typing import Literal

import numpy as np

from onnxgraph.errors import TrainingError


def open_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The named arrays of an ``.npz`` file or a folder of ``NAME.npy`` files, memory-mapped.

    Arrays stored uncompressed in an ``.npz`` are mapped in place; compressed ones are read.

    Raises:
        TrainingError: the path is missing, unreadable or holds no arrays.
    """
    path = os.fspath(path)
    try:
        if os.path.isdir(path):
            files = sorted(f for f in os.listdir(path) if f.endswith(".npy"))
            arrays = {f[:-4]: np.load(os.path.join(path, f), mmap_mode="r") for f in files}
        else:
            arrays = _open_npz(path)
    except FileNotFoundError:
        raise TrainingError(f"{path}: no such file or folder") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise TrainingError(f"{path}: not an .npz file or a folder of .npy files ({exc})") from None
    if not arrays:
        raise TrainingError(f"{path}: holds no arrays")
    return arrays


def _open_npz(path: str) -> dict[str, np.ndarray]:
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member)
                continue
            raw.seek(info.header_offset)
            header = raw.read(30)
            name_len, extra_len = int.from_bytes(header[26:28], "little"), int.from_bytes(header[28:30], "little")
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(raw)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(raw)
            order: Literal["C", "F"] = "F" if fortran else "C"
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=raw.tell(), shape=shape, order=order)
    return arrays


@dataclasses.dataclass(frozen=True)
class BatchOrder:
    """Which rows make up the batch of each global step.

    Attributes:
        rows: the number of rows in the data.
        batch_size: rows per batch.
        seed: seed of the per-epoch shuffles.
        drop_last: skip each epoch's last, partial batch.
        shuffle: shuffle each epoch (else rows in order).
    """

    rows: int
    batch_size: int
    seed: int = 0
    drop_last: bool = False
    shuffle: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise TrainingError(f"the batch size must be positive (got {self.batch_size})")
        if self.steps_per_epoch == 0:
            raise TrainingError(f"the data has {self.rows} rows: fewer than one batch of {self.batch_size}")

    @property
    def steps_per_epoch(self) -> int:
        if self.drop_last:
            return self.rows // self.batch_size
        return math.ceil(self.rows / self.batch_size)

    def permutation(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.rows)
        return np.random.default_rng([self.seed, epoch]).permutation(self.rows)

    def rows_of(self, step: int) -> tuple[int, np.ndarray]:
        """(epoch, row indices) of the batch at 0-based global ``step``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        return epoch, self.permutation(epoch)[k * self.batch_size : (k + 1) * self.batch_size]


def take(arrays: dict[str, np.ndarray], names: list[str], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The given rows of the named arrays, as contiguous in-memory arrays."""
    return {name: np.ascontiguousarray(arrays[name][rows]) for name in names}
