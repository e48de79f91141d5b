"""Peak resident memory per phase, and GPU memory omitted without NVML."""

from __future__ import annotations

import sys

import numpy as np

from onnxgraph.runtime.memory import GpuMemory, PeakRss


def test_peak_rss_sees_a_touched_allocation_that_is_already_freed():
    probe = PeakRss()
    probe.start()
    block = np.ones(64 * 1024 * 1024, dtype=np.uint8)  # 64 MiB, written so the pages are resident
    del block
    assert probe.increase_mb() >= 48


def test_each_phase_is_measured_from_its_own_start():
    probe = PeakRss()
    probe.start()
    block = np.ones(64 * 1024 * 1024, dtype=np.uint8)
    del block
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
