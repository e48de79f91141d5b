"""Data-parallel training on MPI (mpi4py): the communicator, each rank's place, and the per-step reduction.

Every rank holds the same parameters and takes a disjoint shard of each global batch. After the
gradient step, :meth:`DataParallel.reduce` sums the ranks' gradients with ``Allreduce`` on a few large
contiguous buffers (one per dtype, split at :data:`BUCKET_BYTES`), not one call per tensor. Each
rank's gradients are weighted by its share of the global batch's rows before the sum, so the result
is the gradient of the mean loss over the whole global batch, as one process with that batch would
compute it. Floating-point buffers (BatchNorm running statistics) are averaged in the same
reduction, so they stay identical on every rank; the batch statistics BatchNorm normalises with
stay each rank's own (like PyTorch's DistributedDataParallel without SyncBatchNorm).

mpi4py is imported only when a :class:`DataParallel` is made: one process needs no MPI.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from typing import NoReturn

import numpy as np

from onnxgraph.errors import TrainingError

INSTALL = "pip install 'onnxgraph[distributed]'"
"""The command that installs mpi4py and the MPICH runtime."""
BUCKET_BYTES = 64 << 20
"""Largest Allreduce buffer: bigger gradients are reduced in several calls of at most this size."""

_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


def launched_size() -> int:
    """The number of ranks mpiexec started this process among (1 when not under mpiexec), from the
    environment of MPICH's Hydra (``PMI_SIZE``) or Open MPI (``OMPI_COMM_WORLD_SIZE``); imports nothing."""
    for name in _SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def find_mpiexec() -> str:
    """The ``mpiexec`` to launch ranks with: the one next to the Python interpreter (the ``mpich``
    wheel installs it there), else the first on ``PATH``.

    Raises:
        TrainingError: mpi4py or mpiexec is missing (the message names the install command).
    """
    require_mpi4py()
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        raise TrainingError(f"no mpiexec found next to {sys.executable} or on PATH; install it with: {INSTALL}")
    return found


def require_mpi4py() -> None:
    """Raises:
    TrainingError: mpi4py is not installed (the message names the install command)."""
    import importlib.util

    if importlib.util.find_spec("mpi4py") is None:
        raise TrainingError(f"data-parallel training needs mpi4py; install it with: {INSTALL}")


def cuda_device_count() -> int:
    """The CUDA devices visible to this process (after ``CUDA_VISIBLE_DEVICES``), from the driver
    library; 0 without one."""
    import ctypes
    import ctypes.util

    try:
        cuda = ctypes.CDLL(ctypes.util.find_library("cuda") or "libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


class DataParallel:
    """This process's place among the ranks, and the collective operations of a training step.

    Args:
        comm: an mpi4py communicator (default: ``MPI.COMM_WORLD``).

    Attributes:
        rank, size: this rank and the number of ranks.
        local_rank, local_size: the same among the ranks on this machine (a communicator split by
            shared memory), for choosing a GPU and a share of the cores.
    """

    def __init__(self, comm=None):
        require_mpi4py()
        from mpi4py import MPI

        self._mpi = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self._errors = self.comm.Dup()  # for failed_together: apart from the steps' collectives

    @property
    def root(self) -> bool:
        """Whether this is rank 0 (the one that writes)."""
        return self.rank == 0

    def threads(self) -> int:
        """This rank's share of the machine's cores (onnxruntime intra-op threads)."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // self.local_size)

    def device_index(self, devices: int) -> int:
        """This rank's GPU among the ``devices`` visible on its machine: its local rank (modulo the
        count: ranks share GPUs when there are fewer)."""
        return self.local_rank % max(devices, 1)

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of a global batch's row indices (sizes differ by at most one)."""
        return np.array_split(rows, self.size)[self.rank]

    def reduce(
        self,
        loss: float,
        rows: int,
        gradients: dict[str, np.ndarray],
        buffers: dict[str, np.ndarray],
    ) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Combine one step across the ranks (collective: every rank calls it each step).

        Args:
            loss: this rank's mean loss over its ``rows`` rows.
            rows: the rows this rank trained on this step.
            gradients: this rank's gradients of its mean loss.
            buffers: running statistics to average (non-floating ones are returned as they are).

        Returns:
            The mean loss over the global batch, the gradients of that mean, and the averaged
            floating-point buffers (new arrays).

        Raises:
            TrainingError: the loss is not finite on some rank (raised on every rank, naming them).
        """
        losses = self.comm.allgather((loss, rows))
        bad = [r for r, (value, _) in enumerate(losses) if not math.isfinite(value)]
        if bad:
            names = ", ".join(f"rank {r} ({losses[r][0]})" for r in bad)
            raise TrainingError(f"the loss is not finite on {names}")
        total = sum(n for _, n in losses)
        weight = rows / total
        averaged = {n: b for n, b in buffers.items() if np.issubdtype(b.dtype, np.floating)}
        summed = self.allreduce_sum(
            {n: g * g.dtype.type(weight) for n, g in gradients.items()},
            {n: b * b.dtype.type(1 / self.size) for n, b in averaged.items()},
        )
        mean_loss = sum(value * n for value, n in losses) / total
        return mean_loss, {n: summed[n] for n in gradients}, {n: summed[n] for n in averaged}

    def allreduce_sum(self, *groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Sum named arrays across the ranks, packed into contiguous buckets per dtype.

        Returns:
            New arrays of the sums, by name (the names of all ``groups`` together).
        """
        arrays = {n: a for group in groups for n, a in group.items()}
        result = {}
        for dtype in sorted({a.dtype for a in arrays.values()}, key=str):
            names = [n for n, a in arrays.items() if a.dtype == dtype]
            flat = np.concatenate([arrays[n].ravel() for n in names])
            step = max(1, BUCKET_BYTES // dtype.itemsize)
            for begin in range(0, flat.size, step):
                self.comm.Allreduce(self._mpi.IN_PLACE, flat[begin : begin + step], op=self._mpi.SUM)
            offset = 0
            for n in names:
                size = arrays[n].size
                result[n] = flat[offset : offset + size].reshape(arrays[n].shape)
                offset += size
        return result

    def failed_together(self, timeout: float = 5.0) -> bool:
        """After an error on this rank: whether every rank reached an error too within ``timeout``
        seconds (a non-blocking barrier on a communicator of its own, so that ranks waiting in a
        step's collective do not match it)."""
        request = self._errors.Ibarrier()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if request.Test():
                return True
            time.sleep(0.01)
        return False

    def exit(self, code: int) -> NoReturn:
        """End this process at once, without ``MPI_Finalize``: mpiexec then stops every other rank,
        also those waiting for this one in a collective."""
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
