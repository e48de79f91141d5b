"""Node counts after ``onnxgraph optimize`` against onnxsim, onnxslim and onnxruntime's basic optimizer.

    python benchmarks/node_counts.py /work/wt/exports/{bert,gpt2,vit_small,resnet18}.{torchscript,dynamo}.onnx
    python benchmarks/node_counts.py --builders transformer,gpt2,vit,resnet_like \
        --write-anchors tests/optimizers/anchor_counts.json

Each tool runs on each model in its own subprocess and every result is counted the same way (nodes of
the main graph and of subgraphs and functions, by op type):

- ``onnxgraph``: the whole ``optimize`` (default pipeline, verified on onnxruntime), run with this
  interpreter (the one onnxgraph is installed in);
- ``onnxsim``: ``onnxsim.simplify(model)``;
- ``onnxslim``: ``onnxslim.slim(model)``;
- ``ort-basic``: onnxruntime with ``graph_optimization_level=ORT_ENABLE_BASIC`` and
  ``optimized_model_filepath`` on the CPU provider.

The anchors (the last three) run with ``--anchor-python`` (default: the shared torch venv, which has
them); their results are cached in ``--cache`` by model path, size and time, so a rerun only runs
onnxgraph again. The report prints total nodes per tool, then per model the op types where onnxgraph
leaves more nodes than the best anchor. ``--builders`` counts the models of models/build.py instead
(written to a temporary folder), and ``--write-anchors`` stores, per builder, each anchor's count and
the smallest among results of standard ONNX ops only (``best``: the figure
tests/optimizers/test_node_counts.py holds onnxgraph to). A result with ops of another domain
(onnxsim fuses attention into ``com.microsoft:Attention``) is marked "(contrib ops)": that compares
with ``optimize --target ort``, not with the default standard-op pipeline.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("onnxgraph", "onnxsim", "onnxslim", "ort-basic")
ANCHORS = TOOLS[1:]
DEFAULT_ANCHOR_PYTHON = "/work/wt/torchvenv/bin/python"


def op_counts(model) -> dict[str, int]:
    """Nodes of a ModelProto (subgraphs and functions included) by op type (``domain:op`` off the default domain)."""
    counts: collections.Counter[str] = collections.Counter()

    def visit(graph) -> None:
        for node in graph.node:
            counts[f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
            for attr in node.attribute:
                if attr.HasField("g"):
                    visit(attr.g)
                for sub in attr.graphs:
                    visit(sub)

    visit(model.graph)
    for function in model.functions:
        visit(function)
    return dict(counts)


def _child(tool: str, path: str) -> None:
    """Runs in the subprocess: one tool on one model; prints ``{"ops": ..., "seconds": ...}``."""
    import onnx

    start = time.perf_counter()
    if tool == "onnxgraph":
        from onnxgraph.optimizers import optimize

        optimized, report = optimize(path)
        if not report.ok:
            raise SystemExit(f"onnxgraph: verification failed on {path}")
        result = optimized.to_proto()
    elif tool == "onnxsim":
        import onnxsim

        result, _ = onnxsim.simplify(path)
    elif tool == "onnxslim":
        import onnxslim

        result = onnxslim.slim(path)
    elif tool == "ort-basic":
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = os.path.join(tmp, "basic.onnx")
            options.log_severity_level = 3
            ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            result = onnx.load(options.optimized_model_filepath, load_external_data=False)
    else:
        raise SystemExit(f"unknown tool {tool}")
    print(json.dumps({"ops": op_counts(result), "seconds": time.perf_counter() - start}))


def _run_tool(tool: str, path: str, python: str) -> dict:
    """One tool on one model in a fresh interpreter; ``{"ops", "seconds"}`` or ``{"error"}``."""
    proc = subprocess.run(
        [python, os.path.abspath(__file__), "--child", tool, path],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _cache_key(tool: str, path: str) -> str:
    stat = os.stat(path)
    return f"{tool}|{os.path.abspath(path)}|{stat.st_size}|{int(stat.st_mtime)}"


def measure(paths: list[str], anchor_python: str, cache_path: str | None, tools=TOOLS) -> dict[str, dict[str, dict]]:
    """Per model path, per tool: ``{"ops": {op: count}, "seconds": s}`` or ``{"error": line}``."""
    cache: dict[str, dict] = {}
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    results: dict[str, dict[str, dict]] = {}
    for path in paths:
        results[path] = {}
        for tool in tools:
            key = _cache_key(tool, path)
            if tool in ANCHORS and key in cache:
                results[path][tool] = cache[key]
                continue
            print(f"  {tool} on {os.path.basename(path)} ...", file=sys.stderr, flush=True)
            result = _run_tool(tool, path, sys.executable if tool == "onnxgraph" else anchor_python)
            results[path][tool] = result
            if tool in ANCHORS and "error" not in result:
                cache[key] = result
                if cache_path:
                    with open(cache_path, "w") as f:
                        json.dump(cache, f, indent=1)
    return results


def total(result: dict) -> int | None:
    return sum(result["ops"].values()) if "ops" in result else None


def contrib_ops(result: dict) -> bool:
    """Whether a result holds ops outside the default ONNX domain (onnxsim fuses attention into
    ``com.microsoft:Attention`` where it can: onnxruntime-only, the job of ``optimize --target ort``)."""
    return any(":" in op for op in result.get("ops", {}))


def best_anchor(per_tool: dict[str, dict], standard_only: bool = False) -> int | None:
    """The smallest anchor count; with ``standard_only``, among results made of standard ONNX ops only."""
    counts = [
        n
        for tool in ANCHORS
        if tool in per_tool
        and (n := total(per_tool[tool])) is not None
        and not (standard_only and contrib_ops(per_tool[tool]))
    ]
    return min(counts) if counts else None


def report(results: dict[str, dict[str, dict]], tools=TOOLS) -> None:
    """Print the totals table and, per model, the ops where onnxgraph is behind the best anchor."""
    print("| model | original | " + " | ".join(tools) + " | onnxgraph - best standard-op anchor |")
    print("| --- | ---: | " + " | ".join("---:" for _ in tools) + " | ---: |")
    for path, per_tool in results.items():
        cells = []
        for tool in tools:
            result = per_tool.get(tool, {})
            if "ops" not in result:
                cells.append(f"error: {result.get('error', '?')[:40]}")
            else:
                cells.append(f"{total(result)}{' (contrib ops)' if contrib_ops(result) else ''}")
        ours, best = total(per_tool.get("onnxgraph", {})), best_anchor(per_tool, standard_only=True)
        gap = "" if ours is None or best is None else f"{ours - best:+d}"
        print(f"| {os.path.basename(path)} | {per_tool.get('original', '')} | " + " | ".join(cells) + f" | {gap} |")
    for path, per_tool in results.items():
        ours = per_tool.get("onnxgraph", {}).get("ops")
        if ours is None:
            continue
        behind = []
        for op in sorted(set(ours).union(*(per_tool[t].get("ops", {}) for t in ANCHORS if t in per_tool))):
            theirs = {t: per_tool[t]["ops"].get(op, 0) for t in ANCHORS if "ops" in per_tool.get(t, {})}
            if theirs and ours.get(op, 0) > min(theirs.values()):
                behind.append(f"{op} {ours.get(op, 0)} vs " + "/".join(f"{theirs[t]}" for t in theirs))
        if behind:
            print(
                f"\n{os.path.basename(path)}: onnxgraph behind on (ours vs {'/'.join(ANCHORS)}): " + "; ".join(behind)
            )


def _builder_models(names: list[str], folder: str) -> dict[str, str]:
    """Write the named models/build.py builders (default arguments) to ``folder``; name -> path."""
    import onnx

    sys.path.insert(0, os.path.join(HERE, "..", "models"))
    import build

    paths = {}
    for name in names:
        path = os.path.join(folder, f"{name}.onnx")
        onnx.save(getattr(build, name)(), path)
        paths[name] = path
    return paths


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", help="ONNX files to count")
    parser.add_argument("--builders", default="", help="comma-separated models/build.py builders to count")
    parser.add_argument("--anchor-python", default=DEFAULT_ANCHOR_PYTHON, help="interpreter with onnxsim/onnxslim/ort")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "node_counts_cache.json"))
    parser.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset of " + ",".join(TOOLS))
    parser.add_argument("--json", help="also write the raw results here")
    parser.add_argument("--write-anchors", help="with --builders: write {builder: best anchor count} here")
    args = parser.parse_args()
    tools = tuple(t for t in args.tools.split(",") if t)

    import onnx

    with tempfile.TemporaryDirectory() as folder:
        named = _builder_models([b for b in args.builders.split(",") if b], folder) if args.builders else {}
        paths = list(args.models) + list(named.values())
        results = measure(paths, args.anchor_python, args.cache if not named else None, tools)
        for path in paths:
            results[path]["original"] = sum(op_counts(onnx.load(path, load_external_data=False)).values())
        report(results, tools)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        if args.write_anchors:
            anchors = {}
            for name, path in named.items():
                per_tool = {t: results[path][t] for t in ANCHORS if t in results[path]}
                anchors[name] = {t: total(r) for t, r in per_tool.items()}
                anchors[name]["contrib"] = [t for t, r in per_tool.items() if contrib_ops(r)]
                anchors[name]["best"] = best_anchor(per_tool, standard_only=True)
            with open(args.write_anchors, "w") as f:
                json.dump(anchors, f, indent=1, sort_keys=True)
                f.write("\n")


if __name__ == "__main__":
    main()
