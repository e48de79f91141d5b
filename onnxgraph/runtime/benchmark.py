"""Benchmark one model, or two models against each other, on onnxruntime with output parity.

Library entry points:

* :func:`run_benchmark` returns a :class:`BenchReport` (raw latencies included, for plots).
* :func:`compare_models` benchmarks a baseline against a candidate and returns the JSON-shaped dict
  that ``onnxgraph bench A B --json`` writes; ``onnxgraph optimize --bench`` is meant to call it.

With two models, each one's set-up (session creation and a first run, with the peak memory over both)
is measured in fresh child processes, the order alternating over rounds
(:mod:`onnxgraph.runtime.setup_cost`), so neither inherits the other's grown arenas; one model is
measured in this process. Then each model is set up in this process, and the
warm-up runs and the counted runs alternate A, B, A, B so that drift of a shared machine hits both,
and neither is cold when counting starts.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

import onnxgraph
from onnxgraph.errors import BenchError, one_line
from onnxgraph.metadata import runs_backward
from onnxgraph.runtime import inputs as model_inputs
from onnxgraph.runtime.compare import OutputComparison, compare_outputs, default_tolerance, half_precision_of
from onnxgraph.runtime.memory import GpuMemory, PeakRss
from onnxgraph.runtime.providers import (
    CUDA,
    active_provider,
    cuda_status,
    prime_runtime,
    resolve_providers,
)
from onnxgraph.runtime.runner import TimedSession
from onnxgraph.runtime.sessions import create_session, run_budget
from onnxgraph.runtime.setup_cost import SetupCost, SetupJob, measure_setups
from onnxgraph.runtime.stats import ratio_of_medians_ci, summarize_latencies

DEFAULT_WARMUP = 10
DEFAULT_RUNS = 100
_NO_SPINNING = {"session.intra_op.allow_spinning": "0"}
"""Session config for two interleaved models: by default onnxruntime's idle intra-op threads spin for
a while after each run, and would steal the cores of the other model's run (A/A runs with 2 threads
on 2 cores measured ratios from 0.73 to 1.31 with spinning, 0.98 to 1.00 without)."""

ModelSource = str | os.PathLike | onnx.ModelProto
"""A model file (preferred: external data works and session creation is timed as users see it) or a proto."""
Progress = Callable[[str, float], None]
"""Called with a short description of the phase and the fraction done (0..1)."""


@dataclass
class BenchConfig:
    """How to benchmark.

    Attributes:
        provider: ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`~onnxgraph.runtime.providers.resolve_providers`).
        warmup: uncounted rounds (one run of each model) after the first runs.
        runs: counted runs per model; ignored when ``duration_s`` is set.
        duration_s: run the counted, interleaved runs for this many seconds instead of a fixed count.
        threads: onnxruntime intra-op threads (None: onnxruntime's default).
        io_binding: keep inputs and outputs on the device (CUDA); on CPU they are bound in host memory.
        input_shapes: input name -> shape for dynamic inputs; other dynamic dims get
            :data:`~onnxgraph.runtime.inputs.DEFAULT_DYNAMIC_DIM`.
        inputs_npz: an ``.npz`` file with one array per model input, used instead of random data.
        int_range: ``[low, high)`` of random integer inputs (token ids and other indices).
        input_ranges: input name -> ``[low, high)``, taking precedence over ``int_range``.
        seed: seed of the random inputs.
        tolerance: ``(rtol, atol)`` for every output, instead of the dtype defaults.
        output_tolerances: output name -> ``(rtol, atol)``, taking precedence over ``tolerance``.
        intra_op_spinning: let idle intra-op threads spin; None: onnxruntime's default (on) for one
            model, off for two (see :data:`_NO_SPINNING`).
        memory_pattern: onnxruntime's memory pattern; None: on, except for gradient and training-step
            models built by onnxgraph (see :func:`onnxgraph.metadata.runs_backward`), which run
            with it off as their training sessions do.
        setup_rounds: with two models, how many fresh processes measure each one's session
            creation, first run and peak memory (medians are reported; the order alternates A, B,
            then B, A).
    """

    provider: str = "auto"
    warmup: int = DEFAULT_WARMUP
    runs: int = DEFAULT_RUNS
    duration_s: float | None = None
    threads: int | None = None
    io_binding: bool = False
    input_shapes: Mapping[str, Sequence[int]] = field(default_factory=dict)
    inputs_npz: str | os.PathLike | None = None
    int_range: tuple[int, int] = model_inputs.DEFAULT_INT_RANGE
    input_ranges: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    seed: int = 0
    tolerance: tuple[float, float] | None = None
    output_tolerances: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    intra_op_spinning: bool | None = None
    memory_pattern: bool | None = None
    setup_rounds: int = 2

    def check(self) -> None:
        """Raise BenchError on settings that cannot work."""
        if self.setup_rounds < 1:
            raise BenchError(f"set-up rounds must be at least 1, not {self.setup_rounds}")
        if self.warmup < 0:
            raise BenchError(f"warm-up runs must be 0 or more, not {self.warmup}")
        if self.duration_s is None and self.runs < 1:
            raise BenchError(f"runs must be at least 1, not {self.runs}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise BenchError(f"duration must be more than 0 seconds, not {self.duration_s}")
        if self.threads is not None and self.threads < 1:
            raise BenchError(f"threads must be at least 1, not {self.threads}")
        for name, (low, high) in [("", self.int_range), *self.input_ranges.items()]:
            if low >= high:
                where = f" of '{name}'" if name else ""
                raise BenchError(f"input range{where} {low},{high} is empty: LOW must be below HIGH")


@dataclass
class ModelResult:
    """What was measured for one model."""

    path: str
    provider: str
    session_providers: list[str]
    session_create_s: float
    first_run_ms: float
    warmup_runs: int
    latencies_ms: list[float]
    peak_rss_mb: float
    memory_pattern: bool = True
    gpu_memory_mb: float | None = None

    @property
    def latency(self) -> dict[str, float]:
        """min, mean, p50, p90, p95, p99 and max of the counted runs, in milliseconds."""
        return summarize_latencies(self.latencies_ms)

    @property
    def throughput_per_s(self) -> float:
        """Runs per second: counted runs divided by the time they took."""
        return 1000.0 * len(self.latencies_ms) / sum(self.latencies_ms)

    def to_dict(self) -> dict:
        result = {
            "path": self.path,
            "provider": self.provider,
            "session_providers": self.session_providers,
            "session_create_s": self.session_create_s,
            "first_run_ms": self.first_run_ms,
            "warmup_runs": self.warmup_runs,
            "runs": len(self.latencies_ms),
            "latency_ms": self.latency,
            "throughput_per_s": self.throughput_per_s,
            "peak_rss_mb": self.peak_rss_mb,
            "memory_pattern": self.memory_pattern,
        }
        if self.gpu_memory_mb is not None:
            result["gpu_memory_mb"] = self.gpu_memory_mb
        return result


@dataclass
class BenchReport:
    """Results of :func:`run_benchmark`: one or two models, and with two their comparison."""

    models: list[ModelResult]
    environment: dict
    io_binding: bool = False
    ratio_p50: tuple[float, float, float] | None = None
    """``(ratio, ci_low, ci_high)`` of p50 latency, B over A (below 1: B is faster)."""
    parity: list[OutputComparison] | None = None

    @property
    def parity_passed(self) -> bool:
        """True with one model, else whether every output matched under its tolerance."""
        return self.parity is None or all(c.passed for c in self.parity)

    def to_dict(self) -> dict:
        """The JSON document of ``onnxgraph bench --json`` (see docs/bench.md for the schema)."""
        comparison = None
        if self.ratio_p50 is not None and self.parity is not None:
            ratio, low, high = self.ratio_p50
            comparison = {
                "ratio_p50": ratio,
                "ci95": [low, high],
                "parity": {
                    "passed": self.parity_passed,
                    "outputs": [c.to_dict() for c in self.parity],
                },
            }
        return {
            "models": [m.to_dict() for m in self.models],
            "comparison": comparison,
            "io_binding": self.io_binding,
            "environment": self.environment,
        }


def compare_models(
    model_a: ModelSource,
    model_b: ModelSource,
    *,
    config: BenchConfig | None = None,
    on_progress: Progress | None = None,
    **settings,
) -> dict:
    """Benchmark a baseline ``model_a`` against a candidate ``model_b`` and check their outputs agree.

    Example (what ``onnxgraph optimize ... --bench`` needs)::

        result = compare_models("model.onnx", "model.opt.onnx", provider="cpu", runs=200)
        result["comparison"]["ratio_p50"]          # < 1: the optimized model is faster
        result["comparison"]["parity"]["passed"]   # False: exit 1

    Args:
        model_a: the baseline.
        model_b: the candidate, with the same input names.
        config: all settings at once; or pass :class:`BenchConfig` fields as keywords.
        on_progress: optional callback, see :data:`Progress`.
        **settings: :class:`BenchConfig` fields, used when ``config`` is None.

    Returns:
        The dict of :meth:`BenchReport.to_dict`.

    Raises:
        BenchError, ProviderError, InputError, ModelLoadError: bad settings, inputs or models.
    """
    if config is not None and settings:
        raise TypeError("pass either config or BenchConfig fields as keywords, not both")
    config = config or BenchConfig(**settings)
    return run_benchmark([model_a, model_b], config, on_progress=on_progress).to_dict()


def run_benchmark(
    models: Sequence[ModelSource], config: BenchConfig, *, on_progress: Progress | None = None
) -> BenchReport:
    """Benchmark one model, or two interleaved with output parity (the first is the baseline).

    Raises:
        BenchError, ProviderError, InputError, ModelLoadError: bad settings, inputs or models.
    """
    if len(models) not in (1, 2):
        raise BenchError(f"benchmark one or two models, not {len(models)}")
    config.check()
    report = on_progress or (lambda _what, _fraction: None)
    labels = [_label(m, i) for i, m in enumerate(models)]
    specs, backward, halves = _read_models(models)
    all_feeds = _feeds_for(specs, labels, config)
    memory_patterns = [not b if config.memory_pattern is None else config.memory_pattern for b in backward]
    found = [d for d in halves if d is not None]
    half = max(found, key=lambda d: default_tolerance(d)) if found else None
    providers = resolve_providers(config.provider)
    prime_runtime(providers)
    spinning = config.intra_op_spinning
    if spinning is None:
        spinning = len(models) == 1  # see _NO_SPINNING
    costs = _fresh_setup_costs(models, labels, all_feeds, memory_patterns, providers, config, spinning, report)
    results, runners, outputs = [], [], []
    for label, model, feeds, memory_pattern, cost in zip(labels, models, all_feeds, memory_patterns, costs):
        report(f"setting up {label}", 0.0)
        result, runner, first_outputs = _set_up(label, model, feeds, providers, config, spinning, memory_pattern)
        if cost is not None:
            _take_costs(result, cost)
        results.append(result)
        runners.append(runner)
        outputs.append(first_outputs)
    bench = BenchReport(
        results,
        environment(config.threads, config.provider, spinning),
        io_binding=config.io_binding,
    )
    if len(models) == 2:  # before the counted runs, so a bad --tolerance fails fast
        bench.parity = _parity(outputs[0], outputs[1], config, half)
    report("warming up", 0.0)
    _warm_up(runners, labels, config.warmup)
    for result, latencies in zip(results, _interleaved_runs(runners, config, report)):
        result.latencies_ms = latencies
    if len(models) == 2:
        bench.ratio_p50 = ratio_of_medians_ci(results[0].latencies_ms, results[1].latencies_ms)
    return bench


def environment(threads: int | None, provider: str = "cpu", spinning: bool = True) -> dict:
    """onnxruntime version, available providers, thread settings and CPU of this run.

    With ``provider`` ``"auto"`` or ``"cuda"`` it also says whether CUDA was usable (``"cuda"``:
    ``"usable"`` or the reason it was not), so a run that fell to CPU under ``auto`` says why.
    """
    import onnxruntime as ort

    env = {
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "threads": threads,
        "intra_op_spinning": spinning,
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if provider != "cpu":
        status = cuda_status()
        env["cuda"] = "usable" if status.usable else status.reason
    return env


def _label(model: ModelSource, index: int) -> str:
    return f"<in-memory model {'AB'[index]}>" if isinstance(model, onnx.ModelProto) else os.fspath(model)


def _read_models(models: Sequence[ModelSource]) -> tuple[list[list[model_inputs.InputSpec]], list[bool], list]:
    """Per model, loaded one at a time: its input specs, whether it runs a backward pass
    (:func:`~onnxgraph.metadata.runs_backward`) and the half-precision type it computes in, if any."""
    specs, backward, halves = [], [], []
    for source in models:
        model = onnxgraph.load(source)
        specs.append(model_inputs.specs_of(model))
        backward.append(runs_backward(model.metadata_props))
        halves.append(half_precision_of(model))
    return specs, backward, halves


def _feeds_for(specs: list[list[model_inputs.InputSpec]], labels: list[str], config: BenchConfig) -> list[dict]:
    """The same inputs for every model: from the npz file or seeded random data shaped for the first."""
    model_inputs.check_shapes(specs[0], config.input_shapes)
    unknown = [n for n in config.input_ranges if n not in {s.name for s in specs[0]}]
    if unknown:
        raise model_inputs.InputError(f"--input-range names '{unknown[0]}', which is not a model input")
    if config.inputs_npz is not None:
        feeds = model_inputs.load_npz(config.inputs_npz, specs[0])
    else:
        feeds = model_inputs.random_inputs(
            specs[0],
            shapes=config.input_shapes,
            seed=config.seed,
            int_range=config.int_range,
            int_ranges=config.input_ranges,
        )
    try:
        return [feeds] + [model_inputs.adapt_feeds(feeds, s) for s in specs[1:]]
    except model_inputs.InputError as exc:
        raise model_inputs.InputError(f"{labels[1]}: {exc}") from None


def _set_up(
    label: str,
    model: ModelSource,
    feeds: dict,
    providers: tuple[str, ...],
    config: BenchConfig,
    spinning: bool,
    memory_pattern: bool,
) -> tuple[ModelResult, TimedSession, dict[str, np.ndarray]]:
    """Create the session and run it once; returns its result so far (no counted latencies yet),
    the runner for the later runs, and the first run's outputs."""
    gc.collect()
    rss, gpu = PeakRss(), GpuMemory() if providers[0] == CUDA else None
    rss.start()
    if gpu is not None:
        gpu.start()
    start = time.perf_counter()
    try:
        session = create_session(
            model,
            providers=providers,
            threads=config.threads,
            config_entries=None if spinning else _NO_SPINNING,
            memory_pattern=memory_pattern,
        )
    except Exception as exc:
        raise BenchError(f"{label}: onnxruntime cannot create a session: {one_line(exc)}") from exc
    create_s = time.perf_counter() - start
    device = "cuda" if active_provider(session, providers) == CUDA else "cpu"
    try:
        runner = TimedSession(session, feeds, io_binding=config.io_binding, device=device)
        first_ms = runner.run(budget=run_budget())
        outputs = runner.outputs()
    except Exception as exc:
        raise BenchError(f"{label}: onnxruntime cannot run the model: {one_line(exc)}") from exc
    result = ModelResult(
        path=label,
        provider=session.get_providers()[0],
        session_providers=session.get_providers(),
        session_create_s=create_s,
        first_run_ms=first_ms,
        warmup_runs=config.warmup,
        latencies_ms=[],
        peak_rss_mb=rss.increase_mb(),
        memory_pattern=memory_pattern,
        gpu_memory_mb=gpu.increase_mb() if gpu is not None else None,
    )
    return result, runner, outputs


def _fresh_setup_costs(
    models: Sequence[ModelSource],
    labels: list[str],
    all_feeds: list[dict],
    memory_patterns: list[bool],
    providers: tuple[str, ...],
    config: BenchConfig,
    spinning: bool,
    report: Progress,
) -> list[SetupCost | None]:
    """Two models' set-up costs measured in fresh processes; None for one model, whose set-up in this
    process (after :func:`prime_runtime`) follows no other model's and is reported as measured."""
    if len(models) == 1:
        return [None]
    jobs = [
        SetupJob(label, feeds, providers, config, spinning, memory_pattern)
        for label, feeds, memory_pattern in zip(labels, all_feeds, memory_patterns)
    ]
    report("measuring session set-up", 0.0)
    rounds = config.setup_rounds
    return list(measure_setups(models, jobs, rounds, lambda done: report("measuring session set-up", done / rounds)))


def _take_costs(result: ModelResult, cost: SetupCost) -> None:
    """Report the set-up as the fresh processes measured it, not as this process saw it second."""
    result.session_create_s = cost.session_create_s
    result.first_run_ms = cost.first_run_ms
    result.peak_rss_mb = cost.peak_rss_mb
    result.gpu_memory_mb = cost.gpu_memory_mb


def _warm_up(runners: list[TimedSession], labels: list[str], rounds: int) -> None:
    for _ in range(rounds):
        for runner, label in zip(runners, labels):
            try:
                runner.run()
            except Exception as exc:  # a model whose first run passed can still fail later
                raise BenchError(f"{label}: onnxruntime cannot run the model: {one_line(exc)}") from exc


def _interleaved_runs(runners: list[TimedSession], config: BenchConfig, report: Progress) -> list[list[float]]:
    """Counted runs, one of each model in turn, for ``config.runs`` rounds or ``config.duration_s``."""
    latencies: list[list[float]] = [[] for _ in runners]
    start = last_report = time.perf_counter()
    rounds = 0
    while True:
        for runner, times in zip(runners, latencies):
            times.append(runner.run())
        rounds += 1
        now = time.perf_counter()
        if config.duration_s is not None:
            done = (now - start) / config.duration_s
        else:
            done = rounds / config.runs
        if done >= 1:
            break
        if now - last_report > 0.1:
            report("timing", done)
            last_report = now
    report("timing", 1.0)
    return latencies


def _parity(expected: dict, actual: dict, config: BenchConfig, half=None) -> list[OutputComparison]:
    unknown = [n for n in config.output_tolerances if n not in expected]
    if unknown:
        raise BenchError(f"--tolerance names '{unknown[0]}', which is not an output ({', '.join(expected)})")
    tolerances = {}
    for name, value in expected.items():
        tolerance = config.output_tolerances.get(name, config.tolerance)
        if tolerance is None and half is not None and np.asarray(value).dtype.kind == "f":
            (rtol, atol), (half_rtol, half_atol) = default_tolerance(np.asarray(value).dtype), default_tolerance(half)
            tolerance = (max(rtol, half_rtol), max(atol, half_atol))
        if tolerance is not None:
            tolerances[name] = tolerance
    return compare_outputs(expected, actual, tolerances, mixed_floats=True)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
