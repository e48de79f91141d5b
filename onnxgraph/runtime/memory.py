"""Process memory (resident set size) and GPU memory (through NVML when installed) for benchmarks."""

from __future__ import annotations

import ctypes
import os
import re
import resource
import sys

_MB = 1024 * 1024
_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


class PeakRss:
    """Measures how far the process's peak resident memory rises above its level at :meth:`start`.

    On Linux the kernel's high-water mark (VmHWM) is reset at each start, so consecutive phases are
    measured independently. Elsewhere the peak cannot be reset (``ru_maxrss``): a phase that stays
    below an earlier peak then reports 0.
    """

    def __init__(self) -> None:
        self._base_mb = 0.0

    def start(self) -> None:
        """Take the current resident memory as the baseline and restart peak tracking."""
        self._base_mb = _current_rss_mb() if _reset_high_water_mark() else _peak_rss_mb()

    def increase_mb(self) -> float:
        """Peak resident memory since :meth:`start`, minus the baseline (never negative)."""
        return max(0.0, _peak_rss_mb() - self._base_mb)


def _reset_high_water_mark() -> bool:
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    try:
        with open(_STATUS) as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _current_rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else _peak_rss_mb()


def _peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is not None:
        return kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / _MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


class GpuMemory:
    """Used memory of one GPU through NVML, or nothing when ``pynvml`` (nvidia-ml-py) is not installed.

    NVML reports the whole device, so other processes on the same GPU show up in the figure.

    Args:
        device_id: the CUDA device index onnxruntime uses (0 by default), counted among the devices
            that ``CUDA_VISIBLE_DEVICES`` leaves visible.
    """

    def __init__(self, device_id: int = 0) -> None:
        self._handle = _nvml_handle(device_id)
        self._base_mb = 0.0

    @property
    def available(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Take the device's current used memory as the baseline."""
        self._base_mb = self.used_mb() or 0.0

    def increase_mb(self) -> float | None:
        """Used device memory now minus the baseline, or None without NVML."""
        used = self.used_mb()
        return None if used is None else max(0.0, used - self._base_mb)

    def used_mb(self) -> float | None:
        if self._handle is None:
            return None
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(self._handle).used / _MB


def _nvml_handle(device_id: int):
    try:
        import pynvml

        pynvml.nvmlInit()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
        if visible[0].strip():
            if not visible[device_id].strip().isdigit():  # a UUID
                return pynvml.nvmlDeviceGetHandleByUUID(visible[device_id].strip())
            device_id = int(visible[device_id])
        return pynvml.nvmlDeviceGetHandleByIndex(device_id)
    except Exception:  # no pynvml, no driver, or an index NVML does not know: the figure is omitted
        return None


def release_freed_memory() -> None:
    """Hand memory freed by a finished onnxruntime session back to the OS.

    glibc keeps freed session buffers (a whole copy of the weights) in its arenas, so saving the
    model afterwards would stack on top of them; elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)
