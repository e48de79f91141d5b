"""Train-step time and memory on onnxruntime (CPU): onnxgraph's train_step.onnx against PyTorch eager.

Two measurements, each in fresh subprocesses so peak-memory figures do not mix:

* ``--memory``: peak resident memory (RSS above the level before the first step, steps 2..N) and
  the p50 step time of a transformer train step (AdamW) with onnxruntime's memory pattern on and
  off (``enable_mem_pattern``; training sessions turn it off).
* ``--speed``: p50 step time (forward, backward, AdamW) of onnxgraph's train step against PyTorch
  eager on the same network and batch, at 1 and 2 threads, the two interleaved run by run.

    python benchmarks/train_step.py --memory [--layers 6 --dim 512 --seq 256 --batch 8]
    python benchmarks/train_step.py --speed [--runs 50]

PyTorch is optional and never a package dependency (``--speed`` needs it).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "onnxgraph_models_build", os.path.join(os.path.dirname(__file__), "..", "models", "build.py")
)
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)


def _transformer_artifacts(layers: int, dim: int, seq: int, vocab: int = 1000, recompute: str = "none"):
    from onnxgraph.training import AdamW, build_training

    model = models.transformer_block(vocab=vocab, seq=seq, dim=dim, heads=8, ff=4 * dim, layers=layers)
    return build_training(
        model, loss_fn="cross_entropy", optimizer=AdamW(), frozen=["causal_mask", "attn_scale"], recompute=recompute
    )


def _driver(artifacts, batch: dict, memory_pattern: bool, threads: int | None):
    """A callable running one train step with IO binding, carried tensors as OrtValues (as Trainer does)."""
    import onnxruntime as ort

    from onnxgraph.runtime.sessions import create_session
    from onnxgraph.training.artifacts import Layout

    layout = artifacts.layout
    session = create_session(artifacts.train_step.to_proto(), threads=threads, memory_pattern=memory_pattern)
    carried = {n: ort.OrtValue.ortvalue_from_numpy(np.array(v)) for n, v in artifacts.initial.items()}
    spare = {n: ort.OrtValue.ortvalue_from_numpy(np.empty_like(v)) for n, v in artifacts.initial.items()}
    state = {"step": 0, "carried": carried, "spare": spare}

    def step() -> float:
        binding = session.io_binding()
        binding.bind_output(layout.loss, "cpu")
        for name, array in batch.items():
            binding.bind_cpu_input(name, array)
        state["step"] += 1
        binding.bind_cpu_input(layout.step, np.array(state["step"], np.int64))
        binding.bind_cpu_input(layout.lr, np.array(1e-4, np.float32))
        for name, value in state["carried"].items():
            binding.bind_ortvalue_input(name, value)
            binding.bind_ortvalue_output(Layout.new_name(name), state["spare"][name])
        session.run_with_iobinding(binding)
        state["carried"], state["spare"] = state["spare"], state["carried"]
        return float(binding.get_outputs()[0].numpy())

    return step


def memory_child(args) -> dict:
    """In a subprocess: peak RSS increase over steps 2..N and the p50 step time."""
    artifacts = _transformer_artifacts(args.layers, args.dim, args.seq, recompute=args.recompute)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (args.batch, args.seq + 1))
    step = _driver(artifacts, {"ids": ids[:, :-1], "target": ids[:, 1:]}, args.pattern == "on", args.threads)
    del artifacts
    return {"pattern": args.pattern, "recompute": args.recompute, **_measure_steps(step, args.steps)}


def _measure_steps(step, steps: int) -> dict:
    """Peak RSS increase after the first step (which plans and allocates) and over all ``steps``, and
    the p50 time of steps 2..N."""
    from onnxgraph.runtime.memory import PeakRss

    meter = PeakRss()
    meter.start()
    step()
    first = meter.increase_mb()
    times = []
    for _ in range(steps - 1):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"first_step_mb": first, "peak_mb": meter.increase_mb(), "p50_s": statistics.median(times)}


def torch_memory_child(args) -> dict:
    """In a subprocess: PyTorch eager's peak RSS increase over steps 2..N of the same-sized GPT
    (benchmarks/train_golden.py's Transformer: fused qkv, biases) and its p50 step time."""
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_golden as golden

    if args.threads:
        torch.set_num_threads(args.threads)
    module = golden.Transformer(vocab=1000, d=args.dim, heads=8, seq=args.seq, layers=args.layers, ff=4 * args.dim)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 1000, (args.batch, args.seq + 1)))
    step = functools.partial(_torch_step, module, opt, ids[:, :-1], ids[:, 1:])
    return {"pattern": "pytorch", "recompute": "pytorch", **_measure_steps(step, args.steps)}


def run_memory(args) -> None:
    """Fresh processes, interleaved: memory pattern on and off (no recompute), then recompute
    none and auto (pattern off)."""
    configs = (
        [("on", "none"), ("off", "none"), ("off", "auto")]
        if args.compare_recompute
        else [("on", "none"), ("off", "none")]
    )
    results = []
    if args.compare_pytorch:
        configs = [("off", "none"), ("pytorch", "pytorch")]
    for pattern, recompute in configs * 2:
        command = [
            sys.executable,
            __file__,
            "--torch-memory-child" if pattern == "pytorch" else "--memory-child",
            "--pattern",
            pattern,
            "--recompute",
            recompute,
            "--layers",
            str(args.layers),
            "--dim",
            str(args.dim),
            "--seq",
            str(args.seq),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            *(["--threads", str(args.threads)] if args.threads else []),
        ]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    for pattern, recompute in configs:
        mine = [r for r in results if r["pattern"] == pattern and r["recompute"] == recompute]
        print(
            f"memory pattern {pattern}, recompute {recompute}: peak {min(r['peak_mb'] for r in mine):.0f} MB, "
            f"step p50 {statistics.median(r['p50_s'] for r in mine) * 1e3:.0f} ms"
        )


SPEED_CASES = {
    # name: (module factory, input shape, classes, target shape)
    "mlp 784-256-10, batch 256": (lambda g: g.MLP(784, 256, 10), (256, 784), 10, (256,)),
    "cnn 3-32-64 on 32x32, batch 32": (lambda g: g.CNN((3, 32, 64), 32, 10), (32, 3, 32, 32), 10, (32,)),
    "transformer 2 layers d=256 seq 128, batch 8": (
        lambda g: g.Transformer(vocab=1000, d=256, heads=8, seq=128),
        (8, 128),
        1000,
        (8, 128),
    ),
}


def _torch_step(module, opt, x, target) -> None:
    import torch

    opt.zero_grad()
    torch.nn.functional.cross_entropy(module(x), target).backward()
    opt.step()


def run_speed(args) -> None:
    """p50 step time of onnxgraph's train step and PyTorch eager, interleaved step by step."""
    import tempfile

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_golden as golden

    from onnxgraph.training import AdamW, build_training
    from onnxgraph.training.trainer import Trainer

    rng = np.random.default_rng(0)
    for label, (factory, shape, classes, target_shape) in SPEED_CASES.items():
        torch.manual_seed(0)
        module = golden._perturbed(factory(golden), 0)
        tokens = len(shape) == 2 and classes == 1000
        x = rng.integers(0, classes, shape) if tokens else rng.standard_normal(shape).astype(np.float32)
        target = rng.integers(0, classes, target_shape)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.onnx")
            golden._export(module, torch.from_numpy(x), path)
            params = [n for n, _ in module.named_parameters()]
            artifacts = build_training(path, loss_fn="cross_entropy", optimizer=AdamW(), trainable=params)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            module.train()
            opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
            tx, tt = torch.from_numpy(x), torch.from_numpy(target)
            trainer = Trainer(artifacts, {"x": x, "target": target}, batch_size=shape[0], lr=1e-4, threads=threads)

            torch_step = functools.partial(_torch_step, module, opt, tx, tt)
            times = {"onnxgraph": [], "pytorch": []}
            for run in range(args.runs + 5):
                for name, step in (("onnxgraph", trainer.train_step), ("pytorch", torch_step)):
                    start = time.perf_counter()
                    step()
                    if run >= 5:
                        times[name].append(time.perf_counter() - start)
            ours, theirs = (statistics.median(times[k]) * 1e3 for k in ("onnxgraph", "pytorch"))
            print(
                f"{label}, {threads} thread(s): onnxgraph p50 {ours:.2f} ms, PyTorch eager p50 {theirs:.2f} ms, "
                f"PyTorch/onnxgraph {theirs / ours:.2f}x",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--torch-memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pattern", choices=["on", "off", "pytorch"], default="off", help=argparse.SUPPRESS)
    parser.add_argument("--recompute", choices=["none", "auto", "pytorch"], default="none", help=argparse.SUPPRESS)
    parser.add_argument("--compare-pytorch", action="store_true", help="Peak memory against PyTorch eager.")
    parser.add_argument("--compare-recompute", action="store_true", help="Also measure recompute='auto'.")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args)))
    elif args.torch_memory_child:
        print(json.dumps(torch_memory_child(args)))
    elif args.memory:
        run_memory(args)
    elif args.speed:
        run_speed(args)
    else:
        parser.error("choose --memory or --speed")


if __name__ == "__main__":
    main()
