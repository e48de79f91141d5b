"""Transformer latency on onnxruntime CPU: the original export vs ``optimize`` vs ``optimize --target ort``
vs onnxruntime's transformers optimizer alone.

    python benchmarks/transformer_latency.py [--exports /work/wt/exports] [--models bert,gpt2,llama]
        [--exporter torchscript] [--opset 23] [--variants original,optimize,target-ort,ort-optimizer]
        [--configs 1x1,1x2,8x1] [--runs 7] [--json out.json]

Models are the real exports of benchmarks/real_models.py (``EXPORTS/NAME.EXPORTER.onnx``, weights inline:
BERT-base, GPT-2 small and a small llama-style decoder, and ``gpt2_kv`` / ``llama_kv``: decoders with a
KV cache), or ``bert23`` / ``llama23``: exporter-style models of models/build.py at opset 23 (see
:data:`BUILT`). Per model, four variants are written to a work folder:

- ``original``: the export itself;
- ``optimize``: ``onnxgraph.optimizers.optimize`` (standard ops only, verified);
- ``target-ort``: ``optimize(target="ort")``: our passes, then onnxruntime's transformer fusions
  (``opt_level=0``), verified;
- ``ort-optimizer``: ``onnxruntime.transformers.optimizer.optimize_model`` alone, with its defaults for
  the model type (what its users run: ``opt_level`` 1 for bert and gpt2, which imports PyTorch, so this
  runs in ``--ort-python``, an interpreter with torch and the same onnxruntime);
- ``no-attention``: ``optimize`` with the ``fuse:attention`` rewrite disabled (``--disable
  fuse:attention``), to measure what the standard Attention fusion alone brings.

``--variants`` picks which run (the first is the baseline of the speed-ups); ``--opset 23`` first converts
the export to that opset as a user would (``onnxgraph convert X.onnx -o X23.onnx --opset 23``; the
exports are opset 17 and 18, below the opset-23 Attention, RMSNormalization and RotaryEmbedding).

Every variant then runs in onnxruntime with all graph optimizations on (its default), ``threads``
intra-op threads and spinning off, at ``batch x 128`` tokens (``--configs`` lists ``BATCHxTHREADS``);
a model with a KV cache (``past_*`` inputs) runs twice per configuration: a decode step (1 new token
after 128 cached ones) and a prefill (128 tokens, empty cache),
all four interleaved in one process (A, B, C, D, A, ...) so drift of the shared machine hits them alike.
Reported per configuration: the p50 of wall and CPU time (all threads) per run, each variant's speed-up
over the original (p50 ratio with a paired bootstrap 95% interval), and session-creation time (median of
three). ``contrib`` counts the ``com.microsoft`` nodes of each file.

    python benchmarks/transformer_latency.py --counts-only [--models bert,gpt2]

only compares the fusions: ``com.microsoft`` nodes and node counts of ``--target ort`` against
onnxruntime's optimizer alone at the same ``opt_level=0`` (no PyTorch needed), without timing.

    python benchmarks/transformer_latency.py --op-profile [--models gpt2] [--configs 8x1] [--runs 5]

adds, per configuration, onnxruntime's own per-node profile (``SessionOptions.enable_profiling``) of
another interleaved round: per variant, the median over runs of the kernel time per op type and
the kernels of each type that ran (the graph after onnxruntime's session optimizations, which is
what runs). A kernel's time moves far less with the load of a shared machine than a whole run's,
so this tells which kernels make one variant slower than another.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

SEQUENCE = 128
PAST = 128
"""Cached tokens before a decode step of a KV-cache model."""
MODEL_TYPES = {
    "bert": "bert",
    "gpt2": "gpt2",
    "llama": "gpt2",
    "gpt2_kv": "gpt2",
    "llama_kv": "gpt2",
    "bert23": "bert",
    "llama23": "gpt2",
}
"""onnxruntime's optimizer family per model (it has no llama type for these exports; gpt2 is the
decoder family, and both our ``--target ort`` and its standalone run use the same one)."""
VARIANTS = ("original", "optimize", "target-ort", "ort-optimizer", "no-attention")
DEFAULT_VARIANTS = VARIANTS[:4]
BUILT = {
    "bert23": lambda build: build.transformer(4, 512, 8, 8000, 256, gelu="erf", opset=23),
    "llama23": lambda build: build.decoder(4, 512, 8, 1376, 8000, 256, opset=23),
}
"""Exporter-style models of models/build.py at opset 23, where the standard-op fusions (Gelu,
RMSNormalization, Attention) can fire: 4 layers, hidden 512, 8 heads, vocabulary 8,000."""


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _source(name: str, args: argparse.Namespace, workdir: str) -> str:
    """The model file for ``name``: a real export (converted to ``--opset`` if given), or a :data:`BUILT`
    model written to ``workdir``."""
    if name not in BUILT:
        path = os.path.join(args.exports, f"{name}.{args.exporter}.onnx")
        return path if args.opset is None else _converted(path, args.opset, workdir)
    sys.path.insert(0, os.path.join(HERE, "..", "models"))
    import build

    path = os.path.join(workdir, f"{name}.onnx")
    onnx.save(BUILT[name](build), path)
    return path


def _converted(path: str, opset: int, workdir: str) -> str:
    """``path`` converted to ``opset`` (what ``onnxgraph convert --opset`` does), written to ``workdir``."""
    import onnxgraph
    from onnxgraph.convert.pipeline import ConvertOptions, convert_model

    converted, _ = convert_model(onnxgraph.load(path), ConvertOptions(opset=opset))
    out = os.path.join(workdir, os.path.basename(path).replace(".onnx", f".opset{opset}.onnx"))
    onnxgraph.save(converted, out)
    return out


_ORT_OPTIMIZER = """
import sys
from onnxruntime.transformers.optimizer import optimize_model
optimize_model(sys.argv[1], model_type=sys.argv[2]).save_model_to_file(sys.argv[3])
"""


def _variants(
    name: str, source: str, workdir: str, ort_python: str, variants: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, float]]:
    """Write the optimized ``variants`` of ``source``; return paths and the seconds each took."""
    import subprocess

    import onnxgraph
    from onnxgraph.optimizers import optimize

    model_type = MODEL_TYPES[name]
    shapes = _check_shapes(source, batch=1)
    paths, seconds = {"original": source}, {}
    settings: dict[str, dict[str, Any]] = {
        "optimize": {"target": "standard"},
        "target-ort": {"target": "ort"},
        "no-attention": {"target": "standard", "disabled": {"fuse": ["attention"]}},
    }
    for variant in (v for v in variants if v in settings):
        out = os.path.join(workdir, f"{name}.{variant}.onnx")
        start = time.perf_counter()
        model, report = optimize(source, input_shapes=shapes, model_type=model_type, **settings[variant])
        seconds[variant] = time.perf_counter() - start
        if report.rollbacks or (report.contrib is not None and not report.contrib.applied):
            print(f"{name} {variant}: rollbacks {report.rollbacks} contrib {report.contrib}", file=sys.stderr)
        onnxgraph.save(model, out)
        paths[variant] = out
    if "ort-optimizer" not in variants:
        return paths, seconds
    out = os.path.join(workdir, f"{name}.ort-optimizer.onnx")
    start = time.perf_counter()
    subprocess.run([ort_python, "-c", _ORT_OPTIMIZER, source, model_type, out], check=True, capture_output=True)
    seconds["ort-optimizer"] = time.perf_counter() - start
    paths["ort-optimizer"] = out
    return paths, seconds


def _shapes(source: str, batch: int, sequence: int, past: int) -> dict[str, list[int]]:
    """Input shapes for ``sequence`` new tokens after ``past`` cached ones (a KV cache's ``past_*`` inputs
    are ``[batch, kv_heads, past, head_dim]``; the attention mask spans past and new tokens)."""
    shapes = {}
    for value in onnx.load(source, load_external_data=False).graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if value.name.startswith("past_"):
            shapes[value.name] = [batch, dims[1], past, dims[3]]
        elif "mask" in value.name:
            shapes[value.name] = [batch, past + sequence]
        else:
            shapes[value.name] = [batch, sequence]
    return shapes


def _has_cache(source: str) -> bool:
    return any(v.name.startswith("past_") for v in onnx.load(source, load_external_data=False).graph.input)


def _check_sizes(source: str, batch: int) -> tuple[int, int, int]:
    """``(batch, sequence, past)`` for checking a variant: 16 new tokens, after 8 cached ones with a KV cache."""
    return batch, 16, 8 if _has_cache(source) else 0


def _check_shapes(source: str, batch: int) -> dict[str, list[int]]:
    return _shapes(source, *_check_sizes(source, batch))


def _feeds(source: str, batch: int, sequence: int = SEQUENCE, past: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for name, shape in _shapes(source, batch, sequence, past).items():
        if name.startswith("past_"):
            feeds[name] = rng.standard_normal(shape, dtype=np.float32)
        elif "mask" in name:
            feeds[name] = np.ones(shape, np.int64)
        else:
            feeds[name] = rng.integers(0, 100, shape, dtype=np.int64)  # within every vocabulary
    return feeds


def _session_seconds(path: str, threads: int) -> float:
    from onnxgraph.runtime.sessions import create_session

    times = []
    for _ in range(3):
        start = time.perf_counter()
        create_session(path, threads=threads)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _measure(
    name: str,
    paths: dict[str, str],
    variants: tuple[str, ...],
    batch: int,
    threads: int,
    runs: int,
    warmup: int,
    phase: str = "",
) -> dict:
    """One configuration, interleaved; ``phase`` (KV-cache models) is ``decode`` or ``prefill``."""
    from quantize_bench import _interleaved

    from onnxgraph.runtime.stats import ratio_of_medians_ci

    sequence, past = (1, PAST) if phase == "decode" else (SEQUENCE, 0)
    feeds = _feeds(paths["original"], batch, sequence, past)
    times = dict(zip(variants, _interleaved([paths[v] for v in variants], feeds, runs, warmup, threads)))
    row: dict = {"model": name, "batch": batch, "sequence": sequence, "threads": threads, "runs": runs}
    if phase:
        row.update(phase=phase, past=past)
    base = variants[0]
    for variant in variants:
        entry: dict[str, object] = {kind: round(float(np.median(times[variant][kind])), 1) for kind in ("wall", "cpu")}
        if variant != base:
            entry["speedup_over"] = base
            for kind in ("wall", "cpu"):
                ratio, low, high = ratio_of_medians_ci(times[variant][kind], times[base][kind])
                entry[f"speedup_{kind}"] = [round(ratio, 3), round(low, 3), round(high, 3)]
        row[variant] = entry
    return row


def _op_profile(paths: dict[str, str], variants: tuple[str, ...], batch: int, threads: int, runs: int) -> dict:
    """Per variant: kernel milliseconds per op type (median over ``runs`` interleaved runs, after one
    warm-up) and kernels run per op type, from onnxruntime's profiler."""
    import onnxruntime as ort

    from onnxgraph.runtime.sessions import session_options

    feeds = _feeds(paths["original"], batch)
    sessions = {}
    for variant in variants:
        options = session_options(threads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(os.path.dirname(paths[variants[-1]]), f"profile_{variant}")
        sessions[variant] = ort.InferenceSession(paths[variant], options, providers=["CPUExecutionProvider"])
    for _ in range(runs + 1):
        for session in sessions.values():
            session.run(None, feeds)
    row: dict = {"batch": batch, "sequence": SEQUENCE, "threads": threads, "runs": runs}
    for variant, session in sessions.items():
        profile = session.end_profiling()
        with open(profile) as f:
            events = json.load(f)
        os.unlink(profile)
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("name") == "model_run")[1:]
        per_run: list[Counter[str]] = [Counter() for _ in spans]
        kernels: Counter[str] = Counter()
        for e in events:
            if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
                continue
            for run, (begin, end) in zip(per_run, spans):
                if begin <= e["ts"] <= end:
                    run[e["args"]["op_name"]] += e["dur"] / 1000
                    if run is per_run[0]:
                        kernels[e["args"]["op_name"]] += 1
        ms = {op: round(float(np.median([run[op] for run in per_run])), 2) for op in kernels}
        row[variant] = {
            "kernel_ms": dict(sorted(ms.items(), key=lambda item: -item[1])),
            "kernels": dict(sorted(kernels.items())),
        }
    return row


def _count(path: str, op_type: str) -> int:
    return sum(n.op_type == op_type for n in onnx.load(path, load_external_data=False).graph.node)


def _contrib(path: str) -> dict[str, int]:
    graph = onnx.load(path, load_external_data=False).graph
    return dict(Counter(n.op_type for n in graph.node if n.domain == "com.microsoft"))


def _max_abs_errors(source: str, variants: dict[str, onnx.ModelProto]) -> dict[str, float]:
    """Largest absolute difference to ``source`` over all outputs (logits and presents included), per variant,
    on onnxruntime at batch 2 with 16 new tokens (after 8 cached ones for a KV-cache model)."""
    from onnxgraph.runtime.sessions import create_session

    feeds = _feeds(source, *_check_sizes(source, 2))
    expected = create_session(source).run(None, feeds)
    errors = {}
    for variant, proto in variants.items():
        got = create_session(proto.SerializeToString()).run(None, feeds)
        errors[variant] = max(float(np.abs(a - b).max()) for a, b in zip(got, expected))
    return errors


def _counts(name: str, source: str) -> dict:
    """Contrib and total nodes: ``--target ort`` vs onnxruntime's optimizer alone, both ``opt_level=0``, and
    each one's largest output difference to the original."""
    from onnxruntime.transformers.optimizer import optimize_model

    from onnxgraph.optimizers import optimize
    from onnxgraph.optimizers.fusions.ort_contrib import contrib_op_counts

    model_type = MODEL_TYPES[name]
    shapes = _check_shapes(source, batch=1)
    ours, report = optimize(source, input_shapes=shapes, target="ort", model_type=model_type)
    row: dict = {
        "model": name,
        "model_type": model_type,
        "target_ort": {
            "contrib": contrib_op_counts(ours),
            "nodes": report.after.nodes,
            "kept": bool(report.contrib and report.contrib.applied),
            "reason": report.contrib.reason if report.contrib else "",
        },
    }
    variants = {"target_ort": ours.to_proto()}
    try:
        alone = optimize_model(source, model_type=model_type, opt_level=0).model
    except Exception as exc:  # noqa: BLE001 - onnxruntime's optimizer fails on some exports: record it
        row["ort_alone"] = {"error": f"{type(exc).__name__}: {exc}"}
    else:
        row["ort_alone"] = {
            "contrib": dict(Counter(n.op_type for n in alone.graph.node if n.domain == "com.microsoft")),
            "nodes": len(alone.graph.node),
        }
        variants["ort_alone"] = alone
    for variant, error in _max_abs_errors(source, variants).items():
        row[variant]["max_abs_error"] = error
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exports", default="/work/wt/exports", help="folder of benchmarks/real_models.py exports")
    parser.add_argument("--models", default="bert,gpt2,llama")
    parser.add_argument("--exporter", default="torchscript", choices=("torchscript", "dynamo"))
    parser.add_argument("--opset", type=int, default=None, help="convert the exports to this opset first")
    parser.add_argument(
        "--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma list of {', '.join(VARIANTS)}; first is the base"
    )
    parser.add_argument("--configs", default="1x1,1x2,8x1", help="BATCHxTHREADS list")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workdir", default=None, help="where variants are written (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--ort-python", default=sys.executable, help="python with torch and onnxruntime")
    parser.add_argument("--counts-only", action="store_true", help="only compare contrib node counts")
    parser.add_argument("--op-profile", action="store_true", help="also profile kernel time per op type")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="transformer_latency_")
    if args.counts_only:
        for name in args.models.split(","):
            print(json.dumps(_counts(name, _source(name, args, workdir))), flush=True)
        return
    variants = tuple(args.variants.split(","))
    if not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(set(variants) - set(VARIANTS))}")
    rows = []
    for name in args.models.split(","):
        source = _source(name, args, workdir)
        paths, seconds = _variants(name, source, workdir, args.ort_python, variants)
        info = {
            "model": name,
            "exporter": "models/build.py" if name in BUILT else args.exporter,
            "onnxruntime": _onnxruntime_version(),
            "optimize_s": {k: round(v, 1) for k, v in seconds.items()},
            "contrib": {v: _contrib(paths[v]) for v in variants if v in ("target-ort", "ort-optimizer")},
            "attention": {v: _count(paths[v], "Attention") for v in variants},
            "session_create_s": {v: round(_session_seconds(paths[v], 1), 2) for v in variants},
        }
        print(json.dumps(info), flush=True)
        rows.append(info)
        phases = ("decode", "prefill") if _has_cache(source) else ("",)
        for config in args.configs.split(","):
            batch, threads = (int(x) for x in config.split("x"))
            for phase in phases:
                runs = args.runs if batch == 1 or phase == "decode" else max(3, args.runs // 2)
                row = _measure(name, paths, variants, batch, threads, runs, args.warmup, phase)
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.op_profile and phase != "decode":  # the profile runs the prefill/plain feeds
                    profile = {"model": name, "op_profile": _op_profile(paths, variants, batch, threads, runs)}
                    print(json.dumps(profile), flush=True)
                    rows.append(profile)
        written = {paths[v] for v in variants} | {source}  # optimized variants, a built or converted source
        for path in written - {os.path.join(args.exports, f"{name}.{args.exporter}.onnx")}:
            os.unlink(path)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
