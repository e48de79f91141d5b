"""Counts gathered by the conformance tests, printed at the end of the run."""

from __future__ import annotations

from collections import Counter

COUNTS: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter):
    if COUNTS:
        terminalreporter.section("ONNX conformance round trip")
        for key in sorted(COUNTS):
            terminalreporter.write_line(f"{key}: {COUNTS[key]}")
