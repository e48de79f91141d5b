"""Data-parallel training throughput on MPI: 1 rank x 2 threads against 2 ranks x 1 thread.

For a CNN and a transformer (AdamW), the same global batch per step either way: samples/s, the
step time, and for 2 ranks the time spent in the gradient reduction (``DataParallel.reduce``:
copy to host, Allreduce, copy back) per step, with the gradient bytes. Then the Allreduce time of
one float32 buffer against its size on 2 ranks, to extrapolate the communication cost.

    python benchmarks/distributed.py [--steps 30] [--json out.json]

Launches ``mpiexec -n 2 -hosts localhost`` itself (needs ``pip install 'onnxgraph[distributed]'``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import numpy as np

_spec = importlib.util.spec_from_file_location(
    "onnxgraph_models_build", os.path.join(os.path.dirname(__file__), "..", "models", "build.py")
)
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)

CASES = {
    # name: (model builder, global batch)
    "cnn": (lambda: models.cnn(channels=16, image=32), 64),
    "transformer": (lambda: models.transformer(layers=2, hidden=128, heads=4, vocab=1000, max_positions=64), 16),
}
SEQ = 64


def _data(name: str, rows: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    if name == "cnn":
        return {"x": rng.standard_normal((rows, 1, 32, 32)).astype(np.float32), "target": rng.integers(0, 10, rows)}
    return {
        "input_ids": rng.integers(0, 1000, (rows, SEQ)),
        "attention_mask": np.ones((rows, SEQ), np.int64),
        "target": rng.standard_normal((rows, SEQ, 128)).astype(np.float32),
    }


def _run(name: str, steps: int, threads: int, parallel=None) -> dict:
    from onnxgraph.training import AdamW, Trainer, build_training

    builder, batch = CASES[name]
    loss = "mse" if name == "transformer" else "cross_entropy"
    artifacts = build_training(builder(), loss_fn=loss, optimizer=AdamW(), separate_update=True)
    ranks = 1 if parallel is None else parallel.size
    trainer = Trainer(artifacts, _data(name, batch * 8), batch_size=batch // ranks, threads=threads, parallel=parallel)
    reduce_s = []
    if parallel is not None:
        reduce = parallel.reduce

        def timed(*args, **kwargs):
            start = time.perf_counter()
            result = reduce(*args, **kwargs)
            reduce_s.append(time.perf_counter() - start)
            return result

        parallel.reduce = timed
    trainer.fit(steps=3)  # warm-up
    reduce_s.clear()
    if parallel is not None:
        parallel.comm.Barrier()
    start = time.perf_counter()
    trainer.fit(steps=3 + steps)
    elapsed = time.perf_counter() - start
    grad_bytes = sum(v.numpy().nbytes for v in trainer.gradients.values())
    return {
        "model": name,
        "ranks": ranks,
        "threads": threads,
        "global_batch": batch,
        "samples_per_s": steps * batch / elapsed,
        "step_ms": 1e3 * elapsed / steps,
        "reduce_ms": 1e3 * float(np.median(reduce_s)) if reduce_s else 0.0,
        "gradient_bytes": grad_bytes,
    }


def _allreduce_sweep(parallel) -> list[dict]:
    rows = []
    for size in [1 << k for k in range(10, 27, 2)]:
        buffer = np.ones(size // 4, np.float32)
        times = []
        for _ in range(20 if size < 1 << 22 else 5):
            parallel.comm.Barrier()
            start = time.perf_counter()
            parallel.comm.Allreduce(parallel._mpi.IN_PLACE, buffer)
            times.append(time.perf_counter() - start)
        rows.append({"bytes": size, "allreduce_ms": 1e3 * float(np.median(times))})
    return rows


def _worker(steps: int) -> None:
    from onnxgraph.training.distributed import DataParallel

    parallel = DataParallel()
    results = [_run(name, steps, 1, parallel) for name in CASES]
    sweep = _allreduce_sweep(parallel)
    if parallel.root:
        print(json.dumps({"runs": results, "allreduce": sweep}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--json", default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.steps)
        return
    from onnxgraph.training.distributed import find_mpiexec

    single = [_run(name, args.steps, 2) for name in CASES]
    command = [find_mpiexec(), "-n", "2", "-hosts", "localhost", sys.executable, __file__, "--worker"]
    done = subprocess.run([*command, "--steps", str(args.steps)], capture_output=True, text=True, timeout=600)
    if done.returncode:
        sys.exit(done.stderr)
    parallel = json.loads(done.stdout.strip().splitlines()[-1])
    print("| model | ranks x threads | global batch | samples/s | step ms | reduce ms/step | gradient KB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for run in [*single, *parallel["runs"]]:
        print(
            f"| {run['model']} | {run['ranks']} x {run['threads']} | {run['global_batch']} | "
            f"{run['samples_per_s']:.0f} | {run['step_ms']:.1f} | {run['reduce_ms']:.2f} | "
            f"{run['gradient_bytes'] / 1e3:.1f} |"
        )
    print("\n| Allreduce bytes (2 ranks) | ms |\n| --- | --- |")
    for row in parallel["allreduce"]:
        print(f"| {row['bytes']:,} | {row['allreduce_ms']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"single": single, **parallel}, f, indent=1)


if __name__ == "__main__":
    main()
