"""Peak memory and time of verified commands, as whole processes (``/usr/bin/time -v``).

    python benchmarks/verify_memory.py convert [--workdir DIR] [--tensors 256] [--side 1024]
    python benchmarks/verify_memory.py optimize MODEL.onnx [--onnxscript-python PY] [--repeat 1]
        [--input-shape NAME=D1,D2 ...]

``convert``: a float32 MatMul chain of ``--tensors`` weights of ``side x side`` (1 GiB by default) in
external data, converted with ``onnxgraph convert m.onnx -o o.onnx --fp16`` with and without
``--no-verify``. ``optimize``: ``onnxgraph optimize MODEL -o OUT`` with ``--no-verify``, with
``--verify-whole`` (the original from its file and the whole result, as before region checks) and
verified by regions (the default),
next to onnxscript's optimizer (load, optimize, save; run by ``--onnxscript-python``, an
interpreter that has onnxscript, when given), interleaved ``--repeat`` times.

Each line printed: the run, its wall time, CPU time (user + system; steadier than wall time on a
shared machine), peak RSS summed over the command's process tree (sampled, :mod:`tree_rss`: the
kernel's ``Maximum resident set size`` is only the largest single process, and verification's
onnxruntime sessions run in child processes) and that peak over the weights' size.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tree_rss import TreePeak

_ONNXSCRIPT = """
import sys
import onnx_ir as ir
import onnxscript.optimizer
model = ir.load(sys.argv[1])
onnxscript.optimizer.optimize(model)
ir.save(model, sys.argv[2])
"""


def measure(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, children included) and peak RSS (bytes, summed over
    the command and its child processes: :mod:`tree_rss`, at least the largest single process's
    peak) of ``command`` run under ``/usr/bin/time -v``."""
    proc = subprocess.Popen(["/usr/bin/time", "-v", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreePeak(proc.pid)
    _, stderr = proc.communicate()
    peak = sampler.stop()
    text = stderr.decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    times = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", text)
    cpu = sum(float(t) for t in times)
    # the largest single process's peak is a lower bound a short-lived peak between samples may exceed
    largest = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1)) * 1024
    return seconds, cpu, max(peak, largest)


def chain_model(path: str, tensors: int, side: int) -> int:
    """Write a float32 MatMul chain with its weights in external data; returns the weights' bytes."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights = [], []
    for i in range(tensors):
        weight = (rng.standard_normal((side, side), dtype=np.float32) / np.sqrt(side)).astype(np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes.append(helper.make_node("MatMul", ["x" if i == 0 else f"h{i}", f"w{i}"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Identity", [f"h{tensors}"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", side])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, path, save_as_external_data=True, location=os.path.basename(path) + ".data")
    return tensors * side * side * 4


def _report(label: str, seconds: float, cpu: float, peak: int, weights: int) -> None:
    print(
        f"{label:<34} {seconds:7.2f} s wall {cpu:7.2f} s CPU {peak / 2**20:7.0f} MiB {peak / weights:6.2f}x weights",
        flush=True,
    )


def run_convert(args: argparse.Namespace, onnxgraph: str) -> None:
    model = os.path.join(args.workdir, "chain.onnx")
    weights = chain_model(model, args.tensors, args.side)
    out = os.path.join(args.workdir, "chain.fp16.onnx")
    for flags in (["--no-verify"], []):
        measured = measure([onnxgraph, "convert", model, "-o", out, "--fp16", "--overwrite", *flags])
        _report(f"convert --fp16 {' '.join(flags) or '(verified)'}", *measured, weights)


def run_optimize(args: argparse.Namespace, onnxgraph: str) -> None:
    import onnx

    proto = onnx.load(args.model, load_external_data=False)
    weights = sum(len(t.raw_data) for t in proto.graph.initializer) or os.path.getsize(args.model)
    del proto
    out = os.path.join(args.workdir, "out.onnx")
    script = os.path.join(args.workdir, "onnxscript_optimize.py")
    with open(script, "w") as f:
        f.write(_ONNXSCRIPT)
    for _ in range(args.repeat):
        if args.onnxscript_python:
            _report("onnxscript.optimizer", *measure([args.onnxscript_python, script, args.model, out]), weights)
        shapes = [a for shape in args.input_shape for a in ("--input-shape", shape)]
        for flags in (["--no-verify"], ["--verify-whole"], []):
            measured = measure([onnxgraph, "optimize", args.model, "-o", out, "--overwrite", *flags, *shapes])
            _report(f"optimize {' '.join(flags) or '(verified by regions)'}", *measured, weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["convert", "optimize"])
    parser.add_argument("model", nargs="?", help="the model to optimize")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--tensors", type=int, default=256)
    parser.add_argument("--side", type=int, default=1024)
    parser.add_argument("--onnxscript-python", default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--input-shape", action="append", default=[], help="passed to optimize (NAME=D1,D2)")
    args = parser.parse_args()
    onnxgraph = shutil.which("onnxgraph", path=os.path.dirname(sys.executable)) or "onnxgraph"
    with tempfile.TemporaryDirectory(prefix="verify-memory-") as scratch:
        args.workdir = args.workdir or scratch
        os.makedirs(args.workdir, exist_ok=True)
        if args.what == "convert":
            run_convert(args, onnxgraph)
        else:
            if not args.model:
                parser.error("optimize needs MODEL")
            run_optimize(args, onnxgraph)


if __name__ == "__main__":
    main()
