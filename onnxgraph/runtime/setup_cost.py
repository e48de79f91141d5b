"""Session creation, first run and memory of each benchmarked model, measured in fresh processes.

Measured one after the other in the benchmarking process, the second model's set-up finds the
allocator's arenas already grown and pages already touched by the first: an A/A run of one file
measured 0.46 s vs 0.63 s of session creation and 52 MB vs 100 MB of peak RSS. So each model's
set-up is measured in a child process of its own (onnxruntime primed there first, as in the
benchmark), ``rounds`` times with the order alternating (A, B, then B, A, ...), and the medians
are reported. The counted latencies still come from the two sessions of the benchmarking process,
interleaved.
"""

from __future__ import annotations

import os
import pickle
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import onnx

from onnxgraph.errors import BenchError, one_line


@dataclass
class SetupCost:
    """One model's set-up as measured in a fresh process (medians over the rounds)."""

    session_create_s: float
    first_run_ms: float
    peak_rss_mb: float
    gpu_memory_mb: float | None
    pids: tuple[int, ...] = ()
    """The child processes that measured it, one per round."""


@dataclass
class SetupJob:
    """What a child needs to set one model up as the benchmark does (see ``benchmark._set_up``)."""

    label: str
    feeds: dict
    providers: tuple[str, ...]
    config: Any  # benchmark.BenchConfig
    spinning: bool
    memory_pattern: bool


def measure_setups(
    models: Sequence[str | os.PathLike | onnx.ModelProto],
    jobs: Sequence[SetupJob],
    rounds: int,
    on_round: Callable[[int], None] | None = None,
) -> list[SetupCost]:
    """Each model's set-up in ``rounds`` fresh child processes, the order alternating per round.

    Args:
        models: model files or protos (a proto is written to a temporary file for the children).
        jobs: per model, how to set it up.
        rounds: how many times each model is measured (at least 1).
        on_round: called with the number of rounds done.

    Returns:
        Per model, the medians of its rounds.

    Raises:
        BenchError: a child could not set a model up (the message names the model).
    """
    measured: list[list[tuple]] = [[] for _ in models]
    with tempfile.TemporaryDirectory(prefix="onnxgraph-setup-") as folder:
        paths = [_as_file(model, os.path.join(folder, f"model{i}.onnx")) for i, model in enumerate(models)]
        for round_ in range(rounds):
            order = range(len(models)) if round_ % 2 == 0 else reversed(range(len(models)))
            for i in order:
                measured[i].append(_in_child(paths[i], jobs[i], folder))
            if on_round is not None:
                on_round(round_ + 1)
    return [_medians(runs) for runs in measured]


def _as_file(model: str | os.PathLike | onnx.ModelProto, path: str) -> str:
    if not isinstance(model, onnx.ModelProto):
        return os.fspath(model)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def _medians(runs: list[tuple]) -> SetupCost:
    create, first, rss, gpu, pids = zip(*runs)
    known_gpu = [g for g in gpu if g is not None]
    return SetupCost(
        statistics.median(create),
        statistics.median(first),
        statistics.median(rss),
        statistics.median(known_gpu) if known_gpu else None,
        tuple(pids),
    )


def _in_child(path: str, job: SetupJob, folder: str) -> tuple:
    from onnxgraph.children import parent_death_hook

    request, result = os.path.join(folder, "request.pkl"), os.path.join(folder, "result.pkl")
    with open(request, "wb") as f:
        pickle.dump((path, job), f, protocol=pickle.HIGHEST_PROTOCOL)
    if os.path.exists(result):
        os.remove(result)
    command = [sys.executable, "-c", "from onnxgraph.runtime.setup_cost import _child; _child()", folder]
    done = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        preexec_fn=parent_death_hook(),
    )
    if done.returncode != 0 or not os.path.exists(result):
        reason = one_line(done.stderr.decode("utf-8", "replace"), last=True) or f"exit status {done.returncode}"
        raise BenchError(f"{job.label}: measuring its set-up in a child process failed: {reason}")
    with open(result, "rb") as f:
        status, payload = pickle.load(f)
    if status == "error":
        raise BenchError(payload)
    return payload


def _child() -> None:
    """Entry point of the child: argv[1] is the folder holding request.pkl; writes result.pkl."""
    from onnxgraph.runtime.benchmark import _set_up
    from onnxgraph.runtime.memory import release_freed_memory
    from onnxgraph.runtime.providers import prime_runtime

    folder = sys.argv[1]
    with open(os.path.join(folder, "request.pkl"), "rb") as f:
        path, job = pickle.load(f)
    outcome: tuple[str, object]
    try:
        prime_runtime(job.providers)
        # the probe session's freed memory, left in glibc's arenas, could hold a small model's whole
        # set-up: its peak RSS rise would read 0 in some children and 2 MB in others
        release_freed_memory()
        result, _, _ = _set_up(job.label, path, job.feeds, job.providers, job.config, job.spinning, job.memory_pattern)
        figures = (result.session_create_s, result.first_run_ms, result.peak_rss_mb, result.gpu_memory_mb)
        outcome = ("ok", (*figures, os.getpid()))
    except BenchError as exc:
        outcome = ("error", str(exc))
    with open(os.path.join(folder, "result.pkl"), "wb") as f:
        pickle.dump(outcome, f, protocol=pickle.HIGHEST_PROTOCOL)
