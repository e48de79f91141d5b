"""How the commands scale with model size: each command as a whole process on generated models.

Shapes (N = nodes or initializers):

* ``relu``: a chain of N Relu nodes;
* ``add``: a chain of N Add nodes, each adding its own small initializer (N initializers);
* ``wide``: one Sum over N inputs, each the Relu of the graph input;
* ``inits``: N independent MatMuls reading N small initializers (the fp16 conversion's stress case).

grad differentiates the sum of ``y`` with respect to every initializer (``--wrt x`` where there are none).

Every command runs in a fresh process (the console script's ``main``) with a wall-clock limit, and
the table prints CPU seconds (user + system, the command and its children) per command and size,
plus the ratio of the largest size's time to the smallest's divided by the size ratio (about 1 or
below when linear; start-up costs push it below 1). A timed-out run shows the wall-clock limit; a
run whose check on onnxruntime was skipped for exceeding its time budget is marked "(not run on ort)".

Usage: python benchmarks/scaling.py [--sizes 1000,10000,100000] [--shapes relu,add,wide,inits]
       [--commands info,optimize,convert,grad] [--timeout 300] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile

import onnx

COMMANDS = {
    "info": ["info", "{model}"],
    "optimize": ["optimize", "{model}", "-o", "{out}"],
    "convert": ["convert", "{model}", "-o", "{out}", "--fp16"],
    "grad": ["grad", "{model}", "-o", "{out}", "--loss-fn", "sum", "--output", "y"],
    "bench": ["bench", "{model}", "--runs", "3", "--warmup", "1"],
    # without the runs on onnxruntime: what onnxgraph itself costs (onnxruntime's session creation
    # is superlinear on some graphs)
    "optimize-nv": ["optimize", "{model}", "-o", "{out}", "--no-verify"],
    "convert-nv": ["convert", "{model}", "-o", "{out}", "--fp16", "--no-verify"],
}


_spec = importlib.util.spec_from_file_location(
    "onnxgraph_models_build", os.path.join(os.path.dirname(__file__), "..", "models", "build.py")
)
assert _spec is not None and _spec.loader is not None
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)
SHAPES = {
    "relu": models.relu_chain,
    "add": models.add_chain,
    "wide": models.wide_sum,
    "inits": models.many_initializers,
}
NO_WEIGHTS = {"relu", "wide"}
"""Shapes without initializers: grad differentiates with respect to the input x."""


def _time(command: list[str], timeout: float) -> tuple[float, int, bool]:
    """CPU seconds (user + system) the command and its children used, its exit status (-1: timed out)
    and whether it skipped its check on onnxruntime (over the check's time budget).

    CPU time rather than wall time: on a shared machine, waiting for a core is not the command's cost.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from onnxgraph.cli import main; main()", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return timeout, -1, False
    stderr = done.stderr.decode(errors="replace")
    if done.returncode not in (0, 1):
        sys.stderr.write(stderr[-500:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    skipped = "note: not run on onnxruntime: onnxruntime did not create and run a session within" in stderr
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), done.returncode, skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--shapes", default="relu,add,wide,inits")
    parser.add_argument("--commands", default="info,optimize,convert,grad")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    commands = args.commands.split(",")
    workdir = args.workdir or tempfile.mkdtemp(prefix="onnxgraph-scaling-")
    os.makedirs(workdir, exist_ok=True)
    print(f"| shape | command | {' | '.join(f'{n:,} s' for n in sizes)} | growth / size growth |")
    print(f"|---|---|{'---|' * len(sizes)}---|")
    for shape in args.shapes.split(","):
        paths = {}
        for n in sizes:
            paths[n] = os.path.join(workdir, f"{shape}_{n}.onnx")
            if not os.path.exists(paths[n]):
                onnx.save(SHAPES[shape](n), paths[n])
        for command in commands:
            cells, times = [], []
            for n in sizes:
                out = os.path.join(workdir, f"out_{shape}_{n}_{command}.onnx")
                argv = [a.format(model=paths[n], out=out) for a in COMMANDS[command]]
                if command == "grad" and shape in NO_WEIGHTS:
                    argv += ["--wrt", "x"]
                seconds, code, skipped = _time(argv, args.timeout)
                times.append(seconds)
                cell = f"> {seconds:.0f}" if code == -1 else f"{seconds:.2f}" + ("" if code == 0 else f" (exit {code})")
                cells.append(cell + (" (not run on ort)" if skipped else ""))
            growth = (times[-1] / times[0]) / (sizes[-1] / sizes[0]) if len(sizes) > 1 else float("nan")
            print(f"| {shape} | {command} | {' | '.join(cells)} | {growth:.2f} |", flush=True)


if __name__ == "__main__":
    main()
