"""Benchmark ``onnxgraph reduce``: a 1,000-node model with one planted faulty node, reduced to <= 3 nodes.

    python benchmarks/reduce_bench.py [--nodes 1000] [--fault-at 700] [--check fails-on|reference|command]

The model is models/build.py ``fault_chain``: elementwise nodes with one node onnxruntime rejects
(``fails-on``: Relu on int16) or one that draws random numbers (``reference``: onnxruntime and
onnx.reference disagree); ``command`` runs ``--fails-on``'s test as a user's shell command (a new Python
process per check). Reported: nodes kept, whether the planted node is among them, checks run, seconds
spent in checks and in all (the target is <= 3 nodes in under 60 s of checks).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _builders():
    spec = importlib.util.spec_from_file_location("models_build", os.path.join(HERE, "..", "models", "build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument(
        "--fault-at",
        type=int,
        default=None,
        help="position of the planted node (default 700; nodes - 3 for reference, whose noise "
        "a long Tanh chain after it would damp below the tolerance)",
    )
    parser.add_argument("--check", choices=("fails-on", "reference", "command"), default="fails-on")
    args = parser.parse_args()
    if args.fault_at is None:
        args.fault_at = args.nodes - 3 if args.check == "reference" else 700
    import onnx

    fault = "random" if args.check == "reference" else "int16_relu"
    with tempfile.TemporaryDirectory() as folder:
        model, out = os.path.join(folder, "chain.onnx"), os.path.join(folder, "small.onnx")
        onnx.save(_builders().fault_chain(args.nodes, args.fault_at, fault=fault), model)
        check = {
            "fails-on": ["--fails-on", "onnxruntime"],
            "reference": ["--differs-from-reference"],
            "command": [
                "--check",
                f'{sys.executable} -c "import onnxruntime, sys; onnxruntime.InferenceSession(sys.argv[1])" {{model}}',
            ],
        }[args.check]
        command = [
            os.path.join(os.path.dirname(sys.executable), "onnxgraph"),
            "reduce",
            model,
            "-o",
            out,
            "--json",
            *check,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        report = json.loads(done.stdout)
        kept = [n["name"] for n in report["kept"]]
    planted = f"fault_{args.fault_at}"
    print(
        f"{args.check}: {report['original_nodes']} -> {report['nodes']} nodes {kept} "
        f"(planted node kept: {planted in kept}); {report['checks']} checks, "
        f"{report['check_seconds']:.2f} s in checks, {report['seconds']:.2f} s in all"
    )


if __name__ == "__main__":
    main()
