"""Choosing an onnxruntime execution provider: ``auto``, ``cpu`` or ``cuda``, never silently the wrong one.

The GPU build of onnxruntime lists ``CUDAExecutionProvider`` as available even on machines without a GPU
or without the CUDA libraries; creating a session then falls back to CPU and prints a burst of errors.
So CUDA counts as usable only when a probe session really gets it, and the probe's log is captured
(it becomes the reason in the error message) instead of reaching the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import onnx
import onnx.parser

from onnxgraph.errors import ProviderError, one_line
from onnxgraph.runtime.sessions import create_session

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
CHOICES = ("auto", "cpu", "cuda")
"""What ``--provider`` accepts."""


@dataclass(frozen=True)
class CudaStatus:
    """Whether onnxruntime can create CUDA sessions here, and if not, why."""

    usable: bool
    reason: str = ""


@functools.lru_cache(maxsize=1)
def cuda_status() -> CudaStatus:
    """Probe once per process whether a CUDA session can really be created.

    Returns:
        ``CudaStatus(True)`` when a tiny probe session runs with the CUDA provider, else the reason.
    """
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        return CudaStatus(False, f"onnxruntime {ort.__version__} has no CUDA provider (install onnxruntime-gpu)")
    with _stderr_captured() as log, contextlib.redirect_stdout(io.StringIO()):
        try:
            if hasattr(ort, "preload_dlls"):  # finds CUDA/cuDNN installed as pip packages
                ort.preload_dlls()
            session = create_session(_probe_model(), providers=(CUDA, CPU))
        except Exception as exc:  # a broken CUDA install can raise instead of falling back
            return CudaStatus(False, one_line(exc))
        if CUDA in session.get_providers():
            return CudaStatus(True)
        return CudaStatus(False, _reason_from_log(log) or "no usable GPU or CUDA/cuDNN libraries")


def resolve_providers(choice: str) -> tuple[str, ...]:
    """The onnxruntime provider list for a ``--provider`` choice.

    Args:
        choice: ``"auto"`` (CUDA when a CUDA session can really be created, else CPU), ``"cpu"`` or ``"cuda"``.

    Returns:
        Provider names in priority order.

    Raises:
        ProviderError: ``choice`` is unknown, or ``"cuda"`` was asked for and CUDA is not usable.
    """
    if choice not in CHOICES:
        raise ProviderError(f"unknown provider '{choice}' (choose from {', '.join(CHOICES)})")
    if choice == "cpu":
        return (CPU,)
    status = cuda_status()
    if status.usable:
        return (CUDA, CPU)
    if choice == "cuda":
        raise ProviderError(f"--provider cuda: CUDA is not active: {status.reason}")
    return (CPU,)


def active_provider(session, requested: tuple[str, ...]) -> str:
    """The provider a session really runs on; raises ProviderError if CUDA was required but dropped.

    Args:
        session: an onnxruntime InferenceSession.
        requested: the providers it was created with (from :func:`resolve_providers`).
    """
    active = session.get_providers()
    if requested[0] == CUDA and CUDA not in active:
        raise ProviderError("CUDA was requested but onnxruntime created the session on CPU")
    return active[0]


def prime_runtime(providers: tuple[str, ...]) -> None:
    """Create and run a tiny session once, so one-time costs are not charged to the first model measured.

    The first session of a process loads the provider libraries, creates onnxruntime's environment and
    thread pools and, on CUDA, the device context: hundreds of milliseconds and megabytes that belong to
    no model.
    """
    session = create_session(_probe_model(), providers=providers)
    session.run(None, {"x": np.zeros(2, dtype=np.float32)})


def _probe_model() -> onnx.ModelProto:
    return onnx.parser.parse_model(
        '<ir_version: 8, opset_import: ["" : 13]> probe (float[2] x) => (float[2] y) { y = Relu(x) }'
    )


@contextlib.contextmanager
def _stderr_captured() -> Iterator[BinaryIO]:
    """Send file descriptor 2 (where onnxruntime's C++ logger writes) to a temporary file while active."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _reason_from_log(log: BinaryIO) -> str:
    log.seek(0)
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read().decode(errors="replace"))
    for pattern in (
        r"with error: (.+)",
        r"(Failed to create CUDAExecutionProvider[^.]*)",
        r"\] (.+)",
    ):
        match = re.search(pattern, text)
        if match:
            return match.group(1).strip()
    return ""
