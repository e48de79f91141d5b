"""onnxruntime's session creation against graph width: what bounds every check on very wide graphs.

Times ``InferenceSession`` creation (CPU provider, graph optimizations off, CPU seconds of this
process) for models from ``benchmarks/scaling.py``: ``relu`` (a chain: one node runnable at a time)
and ``wide`` (N Relu nodes of one input, all runnable side by side), plus the float16 conversion of
``add`` (onnxruntime's CPU provider inserts a Cast per float16 initializer, side by side). A growth
ratio near 1 is linear, near the size ratio quadratic.

Usage: python benchmarks/ort_width.py [--sizes 5000,20000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scaling import SHAPES  # noqa: E402 - the sibling script's model builders


def session_seconds(path: str) -> float:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    start = time.process_time()
    ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000")
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    workdir = args.workdir or tempfile.mkdtemp(prefix="onnxgraph-ort-width-")
    print(f"| model | {' | '.join(f'{n:,} s' for n in sizes)} | growth / size growth |")
    print(f"|---|{'---|' * len(sizes)}---|")
    for label in ("relu", "wide", "add", "add fp16"):
        times = []
        for n in sizes:
            path = os.path.join(workdir, f"{label.replace(' ', '_')}_{n}.onnx")
            onnx.save(SHAPES[label.split()[0]](n), path)
            if label.endswith("fp16"):
                command = ["convert", path, "-o", path, "--fp16", "--no-verify", "--overwrite"]
                subprocess.run([sys.executable, "-m", "onnxgraph", *command], check=True, capture_output=True)
            times.append(session_seconds(path))
        growth = (times[-1] / times[0]) / (sizes[-1] / sizes[0])
        print(f"| {label} | {' | '.join(f'{t:.2f}' for t in times)} | {growth:.2f} |", flush=True)


if __name__ == "__main__":
    main()
