"""Sessions run on CPU without noise, also where the GPU build of onnxruntime is installed."""

from __future__ import annotations

import os
import subprocess
import sys

MLP = os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")

SCRIPT = """
import sys
import numpy as np
from onnxgraph.runtime.sessions import create_session
session = create_session(sys.argv[1])
assert session.get_providers() == ["CPUExecutionProvider"], session.get_providers()
(out,) = session.run(None, {"x": np.ones((2, 784), np.float32)})
assert out.shape == (2, 10)
"""


def test_a_cpu_session_prints_nothing_on_stderr(tmp_path):
    # cwd away from the checkout, so `python -c` imports the installed package, not the source folder
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, os.path.abspath(MLP)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
