"""Benchmark ``onnxgraph quantize``: int8 models against their float originals on onnxruntime CPU.

    python benchmarks/quantize_bench.py [--workdir DIR] [--models bert,llama,resnet18] [--runs 15] [--threads 1]
        [--calibration-samples 32] [--calibration-method minmax|percentile|entropy] [--exclude GLOB ...]
        [--resnet18-file FILE.onnx --calibration-file DATA.npz]

Models (built by models/build.py, weights inline as torch.onnx.export writes models under 2 GB):

- ``bert``: a BERT-base-sized exporter-style encoder (``transformer(12, 768, 12, 30522, 512)``),
  dynamic int8 (QOperator), at batch 1 x 128 tokens.
- ``llama``: a llama-style decoder (``decoder(12, 768, 12, 2048, 32000, 512)``, ~134M parameters),
  dynamic int8 (QOperator), at batch 1 x 128 tokens.
- ``resnet18``: ResNet-18 (``resnet18()``), static int8 QDQ, per-channel, calibrated on seeded
  random images (``--calibration-samples``, batch 1 each; ``--calibration-method``; ``--exclude``
  keeps nodes such as ``conv1.conv`` or ``fc`` in float). ``--resnet18-file`` and
  ``--calibration-file`` measure a given ResNet-18 and its images instead (say the trained one of
  benchmarks/resnet18_trained.py, whose logits have real margins): timed on the first image.

For each model the float original and the quantized model run interleaved (A, B, A, B, ...) in one
process, each session with ``--threads`` intra-op threads and spinning off, so drift of the shared
machine hits both. Per run, wall time and the process's CPU time (all threads) are recorded;
reported are the medians, their ratio (float / quantized: the speed-up) with a paired bootstrap 95%
interval, and the accuracy report of ``quantize`` (cosine similarity, top-1 agreement). Targets
(issue 10): bert and llama >= 2x faster with cosine >= 0.99; resnet18 faster with top-1 agreement
>= 0.98 on the calibration inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))

SEQUENCE = 128
_NO_SPINNING = {"session.intra_op.allow_spinning": "0"}


def _build(name: str, workdir: str, args) -> tuple[str, dict, dict]:
    """Write the float model; return its path, the quantize settings and the benchmark feeds."""
    import build

    path = os.path.join(workdir, f"{name}.onnx")
    if name == "resnet18" and args.resnet18_file:
        data = np.load(args.calibration_file)
        (input_name,) = data.files
        shutil.copyfile(args.resnet18_file, path)
        settings = {"mode": "static", "per_channel": True, "calibration": args.calibration_file}
        return path, settings, {input_name: data[input_name][0]}
    rng = np.random.default_rng(0)
    if name == "bert":
        model = build.transformer(12, 768, 12, 30522, 512)
        shapes = {"input_ids": [1, SEQUENCE], "attention_mask": [1, SEQUENCE]}
        feeds = {"input_ids": rng.integers(0, 30522, (1, SEQUENCE)), "attention_mask": np.ones((1, SEQUENCE), np.int64)}
        settings = {"input_shapes": shapes}
    elif name == "llama":
        model = build.decoder(12, 768, 12, 2048, 32000, 512)
        feeds = {"input_ids": rng.integers(0, 32000, (1, SEQUENCE))}
        settings = {"input_shapes": {"input_ids": [1, SEQUENCE]}}
    elif name == "resnet18":
        model = build.resnet18()
        feeds = {"x": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}
        settings = {"mode": "static", "per_channel": True, "input_shapes": {"x": [1, 3, 224, 224]}}
    else:
        raise SystemExit(f"unknown model '{name}' (bert, llama, resnet18)")
    onnx.save(model, path)
    return path, settings, feeds


def _calibration(workdir: str, samples: int) -> str:
    path = os.path.join(workdir, "calibration.npz")
    images = np.random.default_rng(1).standard_normal((samples, 3, 224, 224)).astype(np.float32)
    np.savez(path, x=images)
    return path


def _interleaved(
    paths: list[str], feeds: dict, runs: int, warmup: int, threads: int, config: dict[str, str] | None = None
) -> list[dict[str, list[float]]]:
    """Wall and CPU milliseconds per run for each model, runs alternating between the models; ``config``:
    more onnxruntime session config entries for every session."""
    from onnxgraph.runtime.sessions import create_session

    entries = {**_NO_SPINNING, **(config or {})}
    sessions = [create_session(p, threads=threads, config_entries=entries) for p in paths]
    times = [{"wall": [], "cpu": []} for _ in paths]
    for i in range(warmup + runs):
        for session, record in zip(sessions, times):
            wall, cpu = time.perf_counter(), time.process_time()
            session.run(None, feeds)
            if i >= warmup:
                record["cpu"].append((time.process_time() - cpu) * 1000)
                record["wall"].append((time.perf_counter() - wall) * 1000)
    return times


def _measure(name: str, workdir: str, args) -> dict:
    from onnxgraph.quantize import QuantizeConfig, quantize
    from onnxgraph.runtime.stats import ratio_of_medians_ci

    path, settings, feeds = _build(name, workdir, args)
    if settings.get("mode") == "static":
        if "calibration" not in settings:
            settings["calibration"] = _calibration(workdir, args.calibration_samples)
        settings["calibration_method"] = args.calibration_method
        settings["exclude"] = args.exclude
    out = os.path.join(workdir, f"{name}.int8.onnx")
    start = time.perf_counter()
    report = quantize(path, out, QuantizeConfig(min_cosine=-1.0, **settings))
    quantize_s = time.perf_counter() - start
    float_t, quant_t = _interleaved([path, out], feeds, args.runs, args.warmup, args.threads)
    row = {
        "model": name,
        "method": report.method,
        "quantize_s": round(quantize_s, 1),
        "float_mb": round(os.path.getsize(path) / 2**20, 1),
        "int8_mb": round(os.path.getsize(out) / 2**20, 1),
    }
    for kind in ("wall", "cpu"):
        ratio, low, high = ratio_of_medians_ci(quant_t[kind], float_t[kind])  # float / quantized
        row[f"float_{kind}_ms"] = round(float(np.median(float_t[kind])), 1)
        row[f"int8_{kind}_ms"] = round(float(np.median(quant_t[kind])), 1)
        row[f"speedup_{kind}"] = [round(ratio, 2), round(low, 2), round(high, 2)]
    out_acc = report.accuracy.outputs[0]
    row.update(
        {
            "cosine": round(out_acc.cosine, 5),
            "top1": None if out_acc.top1 is None else round(out_acc.top1, 4),
            "near_ties": None if out_acc.near_ties is None else round(out_acc.near_ties, 4),
            "samples": report.accuracy.samples,
            "quantized_ops": report.quantized_ops,
        }
    )
    os.unlink(path)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None, help="where models are generated (default: a temp folder)")
    parser.add_argument("--models", default="bert,llama,resnet18")
    parser.add_argument("--runs", type=int, default=15, help="counted runs per model")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--calibration-method", default="minmax", choices=["minmax", "percentile", "entropy"])
    parser.add_argument("--exclude", action="append", default=[], help="node-name glob kept in float (static)")
    parser.add_argument("--resnet18-file", help="a ResNet-18 .onnx to measure instead of the builder's")
    parser.add_argument("--calibration-file", help="its calibration images (.npz, one stack)")
    args = parser.parse_args()
    if bool(args.resnet18_file) != bool(args.calibration_file):
        parser.error("--resnet18-file and --calibration-file go together")
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for name in args.models.split(","):
            row = _measure(name, workdir, args)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
