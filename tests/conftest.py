"""Suite-wide fixtures: counts of what the ONNX-suite tests compared, printed at the end of the run.

Cases that onnxruntime itself cannot run are counted, not skipped: they are outside what the suite can
check, and the counts say how many there were.
"""

from __future__ import annotations

from collections import Counter

import pytest

_COUNTS: Counter[str] = Counter()


@pytest.fixture
def counts() -> Counter[str]:
    """A run-wide counter; its entries are printed in the terminal summary."""
    return _COUNTS


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        terminalreporter.section("ONNX test-suite counts")
        for key in sorted(_COUNTS):
            terminalreporter.write_line(f"{key}: {_COUNTS[key]}")
