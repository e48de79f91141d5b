"""What the load-time tensor checks (issue 14) cost, and how long ``import onnxgraph.cli`` takes.

Loads a model of --mib MiB of float32 weights (inline, then in external data) with the checks on and
off (``check_tensor_proto`` replaced by a no-op), interleaved, and prints medians. The inline case pays
one copy of each ``raw_data`` to read its length; the external case reads only file sizes. Then times
``import onnxgraph.cli`` in fresh interpreters against importing numpy and onnx as well (what the eager
package import did before).

Usage: python benchmarks/load_checks.py [--mib 400] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper

import onnxgraph
import onnxgraph.serde.importer as importer


def _model(folder: str, mib: int, external: bool) -> str:
    count = max(1, mib // 4)
    weights = [numpy_helper.from_array(np.full((1024, 1024), i, np.float32), f"w{i}") for i in range(count)]
    nodes = [helper.make_node("Add", ["x" if i == 0 else f"y{i - 1}", f"w{i}"], [f"y{i}"]) for i in range(count)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1024, 1024])],
        [helper.make_tensor_value_info(f"y{count - 1}", onnx.TensorProto.FLOAT, [1024, 1024])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = os.path.join(folder, "external.onnx" if external else "inline.onnx")
    onnx.save(model, path, save_as_external_data=external, location="external.onnx.data", size_threshold=0)
    return path


def _time_load(path: str) -> float:
    start = time.perf_counter()
    onnxgraph.load(path)
    return time.perf_counter() - start


def _time_import(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    checked = importer.check_tensor_proto
    with tempfile.TemporaryDirectory() as folder:
        for external in (False, True):
            path = _model(folder, args.mib, external)
            on, off = [], []
            for _ in range(args.repeat):
                importer.check_tensor_proto = checked
                on.append(_time_load(path))
                importer.check_tensor_proto = lambda proto, source: None
                off.append(_time_load(path))
            importer.check_tensor_proto = checked
            a, b = statistics.median(on), statistics.median(off)
            kind = "external data" if external else "inline"
            print(f"{args.mib} MiB {kind}: load with checks {a:.3f} s, without {b:.3f} s, ratio {a / b:.2f}")
    light = [_time_import("import onnxgraph.cli") for _ in range(args.repeat)]
    eager = [_time_import("import onnxgraph.cli, numpy, onnx") for _ in range(args.repeat)]
    print(
        f"python -c 'import onnxgraph.cli': {statistics.median(light):.3f} s; "
        f"with numpy and onnx: {statistics.median(eager):.3f} s"
    )


if __name__ == "__main__":
    main()
