"""Peak resident memory per phase, and GPU memory omitted without NVML."""

from __future__ import annotations

import mmap
import sys

import numpy as np

from onnxgraph.runtime.memory import GpuMemory, PeakRss


def _touch_fresh_pages(size: int) -> None:
    """Map ``size`` bytes of new anonymous memory, write every page, and unmap it.

    A fresh mapping, unlike a numpy allocation, cannot reuse heap pages that earlier tests left
    resident, so the resident set really grows by ``size`` in the full suite too.
    """
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    block.close()


def test_peak_rss_sees_a_touched_allocation_that_is_already_freed():
    probe = PeakRss()
    probe.start()
    _touch_fresh_pages(64 * 1024 * 1024)
    assert probe.increase_mb() >= 48


def test_each_phase_is_measured_from_its_own_start():
    probe = PeakRss()
    probe.start()
    _touch_fresh_pages(64 * 1024 * 1024)
    probe.start()
    small = np.ones(1024 * 1024, dtype=np.uint8)
    assert probe.increase_mb() < 32
    del small


def test_gpu_memory_is_omitted_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail
    gpu = GpuMemory()
    gpu.start()
    assert not gpu.available
    assert gpu.used_mb() is None and gpu.increase_mb() is None
