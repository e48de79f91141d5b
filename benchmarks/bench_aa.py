"""A/A calibration of ``onnxgraph bench``: how far apart two sessions of the same model measure.

Run from the repository root::

    python benchmarks/bench_aa.py [MODEL] [--repeats 12] [--runs 300] [--threads 1] [--spinning auto]

Prints one line per repetition (p50 ratio B/A with its 95% interval) and the spread of the ratios.
Results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse

from onnxgraph.runtime.benchmark import BenchConfig, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="models/mlp.onnx")
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spinning", choices=("auto", "on", "off"), default="auto", help="intra-op thread spinning")
    args = parser.parse_args()
    spinning = {"auto": None, "on": True, "off": False}[args.spinning]
    config = BenchConfig(provider="cpu", runs=args.runs, threads=args.threads, intra_op_spinning=spinning)
    ratios, excluding_one = [], 0
    for i in range(args.repeats):
        report = run_benchmark([args.model, args.model], config)
        ratio, low, high = report.ratio_p50
        ratios.append(ratio)
        excluding_one += not low <= 1 <= high
        p50 = report.models[0].latency["p50"]
        print(f"{i + 1:2d}  ratio {ratio:.3f}  95% CI {low:.3f}-{high:.3f}  p50 A {p50:.4f} ms")
    print(f"ratios {min(ratios):.3f}-{max(ratios):.3f}; {excluding_one} of {args.repeats} intervals exclude 1")


if __name__ == "__main__":
    main()
