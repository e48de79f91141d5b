"""Benchmark ``onnxgraph optimize`` against onnxscript's optimizer, and its scaling with graph size.

    python benchmarks/optimize_bench.py [--workdir DIR] [--layers 12 --hidden 768] [--scaling 1000,10000,100000]
        [--inline-model bert.torchscript.onnx | --torch-python /path/to/python-with-torch]
        [--sections external,inline,scaling]

1. ``external``: a BERT-base-sized exporter-style encoder (models/build.py ``transformer``: ~110M
   parameters, ~1,270 nodes, weights in external data) is optimized by each tool in its own subprocess:
   load, optimize, save with external data. Reported per tool: wall time of that work (median of
   ``--repeat`` runs) and the subprocess's peak RSS, next to the weights' size.
2. ``inline``: a BERT-base with its weights inline in the .onnx file, as ``torch.onnx.export`` writes
   every model under 2 GB, measured as whole processes (interpreter start to exit, as ``/usr/bin/time``
   measures a command): ``onnxgraph optimize --no-verify``, ``onnxgraph optimize`` (verified) and a
   script that imports onnxscript, loads, optimizes and saves (inline, like the input; and with external
   data, as section 1 saves). The model is ``--inline-model``, else BERT-base exported by
   benchmarks/real_models.py (TorchScript exporter) with ``--torch-python`` (or this interpreter, if it
   has torch and transformers), else the builder encoder of section 1 saved with its weights inline.
   Reported: median wall time, CPU time (user + system) and peak RSS against the file's size.
3. ``scaling``: exporter-style encoders with tiny layers, sized to about 1k, 10k and 100k nodes,
   optimized with ``--no-verify``; the slope of log(time) against log(nodes) is reported (1.0 is
   linear).

Everything is measured in the same run, so ratios hold on a noisy shared machine. Models are built in
subprocesses so that this process stays small: a child's peak RSS as the kernel reports it at exit
includes its parent's peak when it was spawned.
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

from tree_rss import TreePeak

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


def _build_bert(path: str, layers: int, hidden: int, inline: bool) -> None:
    """Runs in a subprocess: the builder's BERT-sized encoder, weights inline or in ``PATH.data``."""
    import onnx

    from build import transformer

    proto = transformer(layers=layers, hidden=hidden, heads=max(1, hidden // 64), vocab=30522, max_positions=512)
    if inline:
        onnx.save(proto, path)
    else:
        onnx.save(proto, path, save_as_external_data=True, location=os.path.basename(path) + ".data")


def _bert(workdir: str, layers: int, hidden: int, inline: bool = False) -> tuple[str, int]:
    """The builder's encoder (made once per workdir) and the size of its weights' file."""
    path = os.path.join(workdir, f"bert-{layers}x{hidden}{'-inline' if inline else ''}.onnx")
    if not os.path.exists(path):
        args = [sys.executable, __file__, "--child-build", path, str(layers), str(hidden), "inline" if inline else ""]
        subprocess.run(args, check=True)
    return path, os.path.getsize(path if inline else path + ".data")


def _exported_bert(workdir: str, python: str) -> str | None:
    """BERT-base exported by benchmarks/real_models.py (TorchScript exporter, weights inline) with the
    interpreter ``python``; None when that interpreter cannot (no torch or transformers)."""
    path = os.path.join(workdir, "bert.torchscript.onnx")
    if not os.path.exists(path):
        script = os.path.join(HERE, "real_models.py")
        args = [python, script, "--out", workdir, "--models", "bert", "--exporters", "torchscript"]
        if subprocess.run(args, check=False).returncode != 0 or not os.path.exists(path):
            return None
    return path


def _has_torch(python: str) -> bool:
    probe = [python, "-c", "import torch, transformers"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def _onnxscript_whole(model: str, out: str, external: bool) -> None:
    """Runs as a whole process (imports included): onnxscript's load + optimize + save."""
    import onnx_ir as ir
    import onnxscript.optimizer

    ir_model = ir.load(model)
    onnxscript.optimizer.optimize(ir_model)
    ir.save(ir_model, out, external_data=os.path.basename(out) + ".data" if external else None)
    print(json.dumps({"nodes": sum(1 for _ in ir_model.graph.all_nodes())}))


def _whole_process(args: list[str], workdir: str) -> dict:
    """Run ``args``; its wall time, CPU time (user + system, from ``wait4``) and peak RSS summed over the
    process and its children (sampled, :mod:`tree_rss`), plus what it printed last on stdout."""
    with tempfile.TemporaryFile(dir=workdir) as out, tempfile.TemporaryFile(dir=workdir) as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err)
        sampler = TreePeak(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        peak = sampler.stop()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {err.read().decode()[-2000:]}")
        lines = out.read().decode().strip().splitlines()
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss": max(peak, usage.ru_maxrss * 1024),
        "last_line": lines[-1] if lines else "",
    }


def _onnxgraph_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "onnxgraph")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "onnxgraph"]


def _inline_section(model: str, workdir: str, repeat: int, shapes: dict) -> None:
    """Section 2: whole processes on a model with inline weights."""
    weights = os.path.getsize(model)
    out = os.path.join(workdir, "inline-out.onnx")
    report = os.path.join(workdir, "inline-report.json")
    shape_args = [a for name, dims in shapes.items() for a in ("--input-shape", f"{name}={','.join(map(str, dims))}")]
    optimize = [*_onnxgraph_command(), "optimize", model, "-o", out, "--overwrite", "--json", report]
    commands = {
        "onnxgraph --no-verify": [*optimize, "--no-verify"],
        "onnxgraph (verified)": [*optimize, *shape_args],
        "onnxscript": [sys.executable, __file__, "--child-whole", "onnxscript", model, out],
        "onnxscript, external save": [sys.executable, __file__, "--child-whole", "onnxscript-external", model, out],
    }
    print(f"inline model: {model} (file {weights / 2**20:.0f} MiB)")
    results = {}
    for tool, args in commands.items():
        runs = []
        for _ in range(repeat):
            run = _whole_process(args, workdir)
            if tool.startswith("onnxgraph"):
                with open(report) as f:
                    run["nodes"] = json.load(f)["after"]["nodes"]
            else:
                run["nodes"] = json.loads(run["last_line"])["nodes"]
            runs.append(run)
        runs.sort(key=lambda r: r["seconds"])
        results[tool] = runs[len(runs) // 2] | {"peak_rss": max(r["peak_rss"] for r in runs)}
    base = results["onnxscript"]
    print(
        f"{'tool (whole process)':28} {'wall':>8} {'vs onnxscript':>14} {'CPU':>8} {'vs onnxscript':>14} "
        f"{'peak RSS':>10} {'RSS/file':>9} {'nodes':>6}"
    )
    for tool, r in results.items():
        print(
            f"{tool:28} {r['seconds']:7.2f}s {r['seconds'] / base['seconds']:13.2f}x {r['cpu']:7.2f}s "
            f"{r['cpu'] / base['cpu']:13.2f}x {r['peak_rss'] / 2**20:8.0f}Mi {r['peak_rss'] / weights:8.2f}x "
            f"{r['nodes']:6d}"
        )


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
    if len(sys.argv) > 1 and sys.argv[1] == "--child-build":
        _build_bert(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), inline=sys.argv[5] == "inline")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--child-whole":
        _onnxscript_whole(sys.argv[3], sys.argv[4], external=sys.argv[2] == "onnxscript-external")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where models are generated (default: a temp folder)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scaling", default="1000,10000,100000", help="node counts ('' to skip)")
    parser.add_argument("--inline-model", default=None, help="an .onnx file with inline weights for section 2")
    parser.add_argument(
        "--torch-python", default=None, help="an interpreter with torch and transformers to export BERT-base"
    )
    parser.add_argument("--sections", default="external,inline,scaling", help="which sections to run")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="optimize-bench-")
    os.makedirs(workdir, exist_ok=True)
    sections = set(args.sections.split(","))
    shapes = {"input_ids": [1, 128], "attention_mask": [1, 128]}
    if "external" in sections:
        _external_section(workdir, args.layers, args.hidden, args.repeat, shapes)
    if "inline" in sections:
        model = args.inline_model
        python = args.torch_python or (sys.executable if _has_torch(sys.executable) else None)
        if model is None and python is not None:
            model = _exported_bert(workdir, python)
        if model is None:
            print("inline: no torch to export BERT-base; using the builder's encoder saved with inline weights")
            model, _ = _bert(workdir, args.layers, args.hidden, inline=True)
        _inline_section(model, workdir, args.repeat, shapes)
    if "scaling" in sections:
        _scaling_section(workdir, [int(n) for n in args.scaling.split(",") if n], args.repeat)


def _external_section(workdir: str, layers: int, hidden: int, repeat: int, shapes: dict) -> None:
    """Section 1: each tool's load + optimize + save in a subprocess, on external-data weights."""
    model, weights = _bert(workdir, layers, hidden)
    print(f"model: {model} (weights {weights / 2**20:.0f} MiB)")
    results = {}
    for tool in TOOLS:
        runs = [_measure(tool, model, workdir, shapes) for _ in range(repeat)]
        runs.sort(key=lambda r: r["seconds"])
        results[tool] = runs[len(runs) // 2] | {"peak_rss": max(r["peak_rss"] for r in runs)}
    base = results["onnxscript"]["seconds"]
    print(f"{'tool':24} {'time':>8} {'vs onnxscript':>14} {'peak RSS':>10} {'RSS/weights':>12} {'nodes':>6}")
    for tool, r in results.items():
        print(
            f"{tool:24} {r['seconds']:7.2f}s {r['seconds'] / base:13.2f}x {r['peak_rss'] / 2**20:8.0f}Mi "
            f"{r['peak_rss'] / weights:11.2f}x {r['nodes']:6d}"
        )


def _scaling_section(workdir: str, sizes: list[int], repeat: int) -> None:
    """Section 3: time against node count."""
    if sizes:
        import onnx

        points = []
        for n in sizes:
            path = _scaling_model(workdir, n)
            seconds = sorted(_measure("onnxgraph --no-verify", path, workdir, {})["seconds"] for _ in range(repeat))
            actual = len(onnx.load(path).graph.node)
            points.append((actual, seconds[len(seconds) // 2]))
            print(f"scaling: {actual:7d} nodes  {points[-1][1]:7.2f}s  ({points[-1][1] / actual * 1e6:.0f} us/node)")
        xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        print(f"scaling: slope of log(time) vs log(nodes) = {slope:.2f} (1.00 = linear)")


if __name__ == "__main__":
    main()
