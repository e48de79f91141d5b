"""Benchmark ``onnxgraph optimize`` against onnxscript's optimizer, and its scaling with graph size.

    python benchmarks/optimize_bench.py [--workdir DIR] [--layers 12 --hidden 768] [--scaling 1000,10000,100000]

1. A BERT-base-sized exporter-style encoder (models/build.py ``transformer``: ~110M parameters,
   ~1,270 nodes, weights in external data) is optimized by each tool in its own subprocess:
   load, optimize, save with external data. Reported per tool: wall time of that work (median of
   ``--repeat`` runs) and the subprocess's peak RSS, next to the weights' size.
2. Linear scaling: exporter-style encoders with tiny layers, sized to about 1k, 10k and 100k nodes,
   optimized with ``--no-verify``; the slope of log(time) against log(nodes) is reported (1.0 is
   linear).

Everything is measured in the same run, so ratios hold on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))

TOOLS = ("onnxgraph --no-verify", "onnxgraph (verified)", "onnxscript")


def _child(tool: str, model: str, out: str, input_shapes: dict) -> None:
    """Runs in the subprocess: one tool's load + optimize + save (imports not timed); prints the
    seconds taken and the node count of the result."""
    if tool.startswith("onnxgraph"):
        import onnxgraph
        from onnxgraph.optimizers import optimize

        start = time.perf_counter()
        optimized, report = optimize(model, verify=tool == "onnxgraph (verified)", input_shapes=input_shapes)
        assert report.ok
        onnxgraph.save(optimized, out, external_data="auto")
        nodes = report.after.nodes
    else:
        import onnx_ir as ir
        import onnxscript.optimizer

        start = time.perf_counter()
        ir_model = ir.load(model)
        onnxscript.optimizer.optimize(ir_model)
        ir.save(ir_model, out, external_data=os.path.basename(out) + ".data")
        nodes = sum(1 for _ in ir_model.graph.all_nodes())
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "nodes": nodes, "peak_rss": _peak_rss()}))


def _peak_rss() -> int:
    """This process's peak resident set (VmHWM, bytes): unlike getrusage's ru_maxrss it does not
    inherit the parent's peak across fork and exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _measure(tool: str, model: str, workdir: str, input_shapes: dict) -> dict:
    """Run one tool in a fresh interpreter; its wall time and peak RSS (bytes)."""
    out = os.path.join(workdir, f"out-{tool.split()[0]}-{abs(hash(tool)) % 1000}.onnx")
    args = [sys.executable, __file__, "--child", tool, model, out, json.dumps(input_shapes)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _bert(workdir: str, layers: int, hidden: int) -> tuple[str, int]:
    import onnx

    from build import transformer

    path = os.path.join(workdir, f"bert-{layers}x{hidden}.onnx")
    if not os.path.exists(path):
        proto = transformer(layers=layers, hidden=hidden, heads=max(1, hidden // 64), vocab=30522, max_positions=512)
        onnx.save(proto, path, save_as_external_data=True, location=os.path.basename(path) + ".data")
    return path, os.path.getsize(path + ".data")


def _scaling_model(workdir: str, nodes: int) -> str:
    import onnx

    from build import transformer

    layers = max(1, round(nodes / 100))  # ~100 nodes per tiny layer
    path = os.path.join(workdir, f"scale-{nodes}.onnx")
    if not os.path.exists(path):
        onnx.save(transformer(layers=layers, hidden=8, heads=2, vocab=16, max_positions=16), path)
    return path


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where models are generated (default: a temp folder)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scaling", default="1000,10000,100000", help="node counts ('' to skip)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="optimize-bench-")
    os.makedirs(workdir, exist_ok=True)

    model, weights = _bert(workdir, args.layers, args.hidden)
    shapes = {"input_ids": [1, 128], "attention_mask": [1, 128]}
    print(f"model: {model} (weights {weights / 2**20:.0f} MiB)")
    results = {}
    for tool in TOOLS:
        runs = [_measure(tool, model, workdir, shapes) for _ in range(args.repeat)]
        runs.sort(key=lambda r: r["seconds"])
        results[tool] = runs[len(runs) // 2] | {"peak_rss": max(r["peak_rss"] for r in runs)}
    base = results["onnxscript"]["seconds"]
    print(f"{'tool':24} {'time':>8} {'vs onnxscript':>14} {'peak RSS':>10} {'RSS/weights':>12} {'nodes':>6}")
    for tool, r in results.items():
        print(
            f"{tool:24} {r['seconds']:7.2f}s {r['seconds'] / base:13.2f}x {r['peak_rss'] / 2**20:8.0f}Mi "
            f"{r['peak_rss'] / weights:11.2f}x {r['nodes']:6d}"
        )

    sizes = [int(n) for n in args.scaling.split(",") if n]
    if sizes:
        import onnx

        points = []
        for n in sizes:
            path = _scaling_model(workdir, n)
            seconds = sorted(
                _measure("onnxgraph --no-verify", path, workdir, {})["seconds"] for _ in range(args.repeat)
            )
            actual = len(onnx.load(path).graph.node)
            points.append((actual, seconds[len(seconds) // 2]))
            print(f"scaling: {actual:7d} nodes  {points[-1][1]:7.2f}s  ({points[-1][1] / actual * 1e6:.0f} us/node)")
        xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print(f"scaling: slope of log(time) vs log(nodes) = {slope:.2f} (1.00 = linear)")


if __name__ == "__main__":
    main()
