"""Load + save speed and memory: onnxgraph against onnx and onnx-ir on a ~400 MB model.

Generates a 24-layer transformer with random weights in external data (cached in --workdir), then
times each library's load and save in fresh subprocesses, interleaved, and reports medians and the
ratios the foundation issue targets:

* onnxgraph load time <= 1.2x onnx.load's, and faster than onnx-ir's;
* onnxgraph peak RSS of load+save <= 1.3x the weights' size.

Usage: python benchmarks/load_save.py [--layers 24] [--hidden 576] [--repeat 3] [--workdir DIR]
Needs the ``bench`` extra (onnx-ir).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT

# Each snippet loads MODEL, saves to OUT (weights to external data) and reports its own timings.
# Peak RSS is read from VmHWM, which starts afresh at exec (ru_maxrss would inherit the parent's).
_PRELUDE = """
import json, sys, time
MODEL, OUT = sys.argv[1], sys.argv[2]
def hwm():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
"""
_REPORT = """
print(json.dumps({"load_s": t1 - t0, "save_s": t2 - t1, "peak_rss": hwm(), "base_rss": base}))
"""
_BASE = "base = hwm()\n"
TOOLS = {
    "onnx": "import onnx\n"
    + _BASE
    + (
        "t0 = time.perf_counter(); m = onnx.load(MODEL); t1 = time.perf_counter()\n"
        "onnx.save(m, OUT, save_as_external_data=True, location='out.data'); t2 = time.perf_counter()\n"
    ),
    "onnx-ir": "import onnx_ir as ir\n"
    + _BASE
    + (
        "t0 = time.perf_counter(); m = ir.load(MODEL); t1 = time.perf_counter()\n"
        "ir.save(m, OUT, external_data='out.data'); t2 = time.perf_counter()\n"
    ),
    "onnxgraph": "import onnxgraph\n"
    + _BASE
    + (
        "t0 = time.perf_counter(); m = onnxgraph.load(MODEL); t1 = time.perf_counter()\n"
        "onnxgraph.save(m, OUT, external_data='out.data'); t2 = time.perf_counter()\n"
    ),
}


def build_transformer(layers: int, hidden: int, vocab: int = 8192, seed: int = 0) -> onnx.ModelProto:
    """A decoder-style transformer stack (attention + MLP per layer) with random weights."""
    rng = np.random.default_rng(seed)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def weight(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * 0.02).astype(np.float32), name))
        return name

    nodes.append(helper.make_node("Gather", [weight("embed", vocab, hidden), "ids"], ["h0"]))
    current = "h0"
    for i in range(layers):
        p = f"l{i}."
        ln1 = p + "ln1"
        ln1_w, ln1_b = weight(p + "ln1.w", hidden), weight(p + "ln1.b", hidden)
        nodes.append(helper.make_node("LayerNormalization", [current, ln1_w, ln1_b], [ln1], axis=-1))
        for proj in ("q", "k", "v"):
            nodes.append(helper.make_node("MatMul", [ln1, weight(p + proj, hidden, hidden)], [p + proj + "_out"]))
        nodes.append(helper.make_node("Transpose", [p + "k_out"], [p + "kt"], perm=[0, 2, 1]))
        nodes.append(helper.make_node("MatMul", [p + "q_out", p + "kt"], [p + "scores"]))
        nodes.append(helper.make_node("Softmax", [p + "scores"], [p + "probs"], axis=-1))
        nodes.append(helper.make_node("MatMul", [p + "probs", p + "v_out"], [p + "ctx"]))
        nodes.append(helper.make_node("MatMul", [p + "ctx", weight(p + "o", hidden, hidden)], [p + "attn"]))
        nodes.append(helper.make_node("Add", [current, p + "attn"], [p + "res1"]))
        ln2_w, ln2_b = weight(p + "ln2.w", hidden), weight(p + "ln2.b", hidden)
        nodes.append(helper.make_node("LayerNormalization", [p + "res1", ln2_w, ln2_b], [p + "ln2"], axis=-1))
        nodes.append(helper.make_node("MatMul", [p + "ln2", weight(p + "up", hidden, 4 * hidden)], [p + "up_out"]))
        nodes.append(helper.make_node("Gelu", [p + "up_out"], [p + "act"]))
        nodes.append(helper.make_node("MatMul", [p + "act", weight(p + "down", 4 * hidden, hidden)], [p + "down_out"]))
        nodes.append(helper.make_node("Add", [p + "res1", p + "down_out"], [p + "out"]))
        current = p + "out"
    nodes.append(helper.make_node("Identity", [current], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "transformer",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("hidden", F, ["batch", "seq", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 10
    return model


def ensure_models(workdir: str, layers: int, hidden: int) -> tuple[str, str, int]:
    """Write (once) the benchmark model with external data and inline; return both paths and the weights' bytes."""
    path = os.path.join(workdir, f"transformer_{layers}x{hidden}.onnx")
    inline = os.path.join(workdir, f"transformer_{layers}x{hidden}_inline.onnx")
    data = path + ".data"
    if not (os.path.exists(path) and os.path.exists(data) and os.path.exists(inline)):
        for stale in (path, inline, data):  # onnx.save appends to an existing data file
            if os.path.exists(stale):
                os.remove(stale)
        model = build_transformer(layers, hidden)
        onnx.save(model, inline)
        onnx.save(model, path, save_as_external_data=True, location=os.path.basename(data), size_threshold=1024)
    return path, inline, os.path.getsize(data)


def run_tool(tool: str, model: str, workdir: str) -> dict:
    out_dir = tempfile.mkdtemp(dir=workdir)
    out = os.path.join(out_dir, "out.onnx")
    code = _PRELUDE + TOOLS[tool] + _REPORT
    result = subprocess.run([sys.executable, "-c", code, model, out], capture_output=True, text=True, check=True)
    for name in os.listdir(out_dir):
        os.remove(os.path.join(out_dir, name))
    os.rmdir(out_dir)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "onnxgraph-bench"))
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    external, inline, weight_bytes = ensure_models(args.workdir, args.layers, args.hidden)
    print(f"model: {external} ({weight_bytes / 2**20:.0f} MiB of weights)")
    for path in (external + ".data", inline):  # warm the page cache so every tool starts equal
        with open(path, "rb") as f:
            while f.read(64 << 20):
                pass
    for layout, model in (("external data", external), ("inline weights", inline)):
        runs: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
        for _ in range(args.repeat):
            for tool in TOOLS:  # interleaved, so drift on a shared machine hits every tool alike
                runs[tool].append(run_tool(tool, model, args.workdir))
        med = {tool: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for tool, rs in runs.items()}
        print(f"\n{layout} (median of {args.repeat}):\n")
        print("| tool | load s | save s | peak RSS MiB | after imports MiB | peak RSS / weights |")
        print("|---|---|---|---|---|---|")
        for tool, m in med.items():
            print(
                f"| {tool} | {m['load_s']:.4f} | {m['save_s']:.3f} | {m['peak_rss'] / 2**20:.0f} | "
                f"{m['base_rss'] / 2**20:.0f} | {m['peak_rss'] / weight_bytes:.2f} |"
            )
        ours = med["onnxgraph"]
        print(f"\nonnxgraph load / onnx.load: {ours['load_s'] / med['onnx']['load_s']:.3f} (target <= 1.2)")
        print(f"onnxgraph load / onnx-ir load: {ours['load_s'] / med['onnx-ir']['load_s']:.3f} (target < 1)")
        print(f"onnxgraph peak RSS / weights: {ours['peak_rss'] / weight_bytes:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
