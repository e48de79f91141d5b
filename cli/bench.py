"""``onnxgraph bench``: latency, memory and output parity of one model or two on onnxruntime."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click

from onnxgraph.cli.errors import CheckFailed
from onnxgraph.cli.options import (
    examples,
    input_shape_option,
    inputs_option,
    json_flag,
    model_argument,
    parse_input_shapes,
    seed_option,
)
from onnxgraph.cli.output import emit, stdout_console


@click.command(
    epilog=examples(
        "onnxgraph bench model.onnx --provider cuda --io-binding",
        "onnxgraph bench model.onnx model.opt.onnx --runs 200 --json bench.json",
        "onnxgraph bench model.onnx --input-shape input_ids=8,128 --input-range 0,30522 --json",
    ),
)
@model_argument
@click.argument("model_b", required=False, metavar="[MODEL_B]")
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when a CUDA session can really be created, else CPU. cuda: fail without CUDA.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Uncounted runs after the first run.",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=None,
    help="Counted runs per model [default: 100].",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="S",
    help="Time the counted runs for S seconds instead of --runs.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads.")
@input_shape_option
@inputs_option
@click.option(
    "--input-range",
    "input_ranges",
    multiple=True,
    metavar="[NAME=]LOW,HIGH",
    help="Range [LOW, HIGH) of random integer inputs such as token ids, for one input or all "
    "without NAME (repeatable) [default: 0,10].",
)
@seed_option
@click.option(
    "--tolerance",
    "tolerances",
    multiple=True,
    metavar="[NAME=]RTOL,ATOL",
    help="Parity tolerance for one output, or for all without NAME (repeatable).",
)
@click.option("--io-binding", is_flag=True, help="Keep inputs and outputs on the device (CUDA).")
@click.option(
    "--memory-pattern/--no-memory-pattern",
    default=None,
    help="onnxruntime's memory pattern [default: on, except off for gradient and training-step models "
    "built by onnxgraph, as they train].",
)
@json_flag
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    metavar="FILE.png",
    help="Write a PNG of the latency distributions (needs onnxgraph[plot]).",
)
def bench(
    model: str,
    model_b: str | None,
    provider: str,
    warmup: int,
    runs: int | None,
    duration: float | None,
    threads: int | None,
    input_shapes: tuple[str, ...],
    inputs: str | None,
    input_ranges: tuple[str, ...],
    seed: int,
    tolerances: tuple[str, ...],
    io_binding: bool,
    memory_pattern: bool | None,
    as_json: str | None,
    plot_path: str | None,
) -> None:
    """Benchmark MODEL, or MODEL (baseline) against MODEL_B with output parity.

    Both models get the same inputs; their counted runs alternate A, B, A, B. Exit code 1 when an
    output of MODEL_B differs from MODEL's beyond its tolerance.
    """
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.runtime.benchmark import DEFAULT_RUNS, BenchConfig, run_benchmark
    from onnxgraph.runtime.inputs import DEFAULT_INT_RANGE
    from onnxgraph.runtime.plot import plot_latencies, require_matplotlib

    if runs is not None and duration is not None:
        raise click.UsageError("give --runs or --duration, not both")
    overall, per_output = _parse_named_pairs(tolerances, "--tolerance", _tolerance)
    int_range, per_input = _parse_named_pairs(input_ranges, "--input-range", _int_range)
    config = BenchConfig(
        provider=provider,
        warmup=warmup,
        runs=runs or DEFAULT_RUNS,
        duration_s=duration,
        threads=threads,
        io_binding=io_binding,
        input_shapes=parse_input_shapes(input_shapes),
        inputs_npz=inputs,
        int_range=int_range or DEFAULT_INT_RANGE,
        input_ranges=per_input,
        seed=seed,
        tolerance=overall,
        output_tolerances=per_output,
        memory_pattern=memory_pattern,
    )
    models = [model] if model_b is None else [model, model_b]
    reads = [inputs] if inputs else []
    check_outputs([Output(as_json, "--json"), Output(plot_path, "--plot")], models=models, reads=reads)
    if plot_path:
        require_matplotlib()
    with progress_bar() as on_progress:
        report = run_benchmark(models, config, on_progress=on_progress)
    result = report.to_dict()
    emit(result, as_json, lambda: print_report(result))
    if plot_path:
        plot_latencies(report, plot_path)
    if not report.parity_passed:
        raise CheckFailed(parity_failure(result))


def bench_pair(model_a: str, model_b: str, provider: str, shapes: dict) -> dict:
    """Benchmark a baseline (A) against a derived model (B) with a progress bar and return the result
    (what ``optimize --bench`` and ``quantize --bench`` do; :func:`print_report` shows it)."""
    from onnxgraph.runtime.benchmark import compare_models

    with progress_bar() as on_progress:
        return compare_models(model_a, model_b, provider=provider, input_shapes=shapes, on_progress=on_progress)


def print_report(result: dict, console=None, *, show_parity: bool = True) -> None:
    """Print a benchmark result (the dict of ``BenchReport.to_dict``) as rich tables.

    ``show_parity=False`` leaves out the output parity table (for models expected to differ, such as
    a quantized one, whose accuracy is reported otherwise).
    """
    from rich.table import Table

    from onnxgraph.cli.output import escape

    console = console or stdout_console()
    models = result["models"]
    table = Table(title="latency", title_justify="left")
    table.add_column("")
    for tag, m in zip("AB", models):
        table.add_column(f"{tag}: {escape(m['path'])}" if len(models) > 1 else escape(m["path"]), justify="right")
    table.add_row("provider", *(m["provider"].removesuffix("ExecutionProvider") for m in models))
    table.add_row("session creation", *(f"{m['session_create_s']:.3f} s" for m in models))
    table.add_row("first run", *(_ms(m["first_run_ms"]) for m in models))
    table.add_row("counted runs", *(f"{m['runs']} (+{m['warmup_runs']} warm-up)" for m in models))
    for stat in ("min", "mean", "p50", "p90", "p95", "p99", "max"):
        table.add_row(stat, *(_ms(m["latency_ms"][stat]) for m in models))
    table.add_row("throughput", *(f"{m['throughput_per_s']:,.1f} runs/s" for m in models))
    table.add_row("peak RSS increase", *(f"{m['peak_rss_mb']:.1f} MB" for m in models))
    table.add_row("memory pattern", *("on" if m["memory_pattern"] else "off" for m in models))
    if any("gpu_memory_mb" in m for m in models):
        table.add_row("GPU memory increase", *(_mb(m.get("gpu_memory_mb")) for m in models))
    console.print(table)
    comparison = result["comparison"]
    if comparison:
        console.print(_ratio_line(comparison))
        if show_parity:
            console.print(_parity_table(comparison["parity"], Table, escape))
    env = result["environment"]
    threads = env["threads"] or "onnxruntime default"
    console.print(
        f"[dim]onnxruntime {env['onnxruntime']} · CPU {escape(env['cpu'])} ({env['cpu_count']} cores) · "
        f"threads {threads} · IO binding {'on' if result['io_binding'] else 'off'}[/]",
        highlight=False,
    )
    if env.get("cuda", "usable") != "usable":
        console.print(f"[dim]CUDA not used: {escape(env['cuda'])}[/]", highlight=False)


_SESSION_NOISE = 0.02
"""Two sessions of the same model differ by up to about 2% in p50 (docs/bench.md): smaller ratios are no verdict."""


def _ratio_line(comparison: dict) -> str:
    ratio, (low, high) = comparison["ratio_p50"], comparison["ci95"]
    if high < 1 and ratio < 1 - _SESSION_NOISE:
        verdict = f"[green]B is faster ({(1 - ratio) * 100:.1f}% less p50 latency)[/]"
    elif low > 1 and ratio > 1 + _SESSION_NOISE:
        verdict = f"[red]B is slower ({(ratio - 1) * 100:.1f}% more p50 latency)[/]"
    elif high < 1 or low > 1:
        verdict = f"no meaningful difference (under {_SESSION_NOISE:.0%}, as between two sessions of one model)"
    else:
        verdict = "no clear difference (the interval includes 1)"
    return f"p50 ratio B/A: [bold]{ratio:.3f}[/] (95% CI {low:.3f} to {high:.3f}): {verdict}"


def _parity_table(parity: dict, table_class, escape):
    title = "output parity: " + ("[green]passed[/]" if parity["passed"] else "[red]FAILED[/]")
    table = table_class(title=title, title_justify="left")
    for column in ("output", "max abs", "max rel", "mismatches", "rtol", "atol", "result"):
        table.add_column(column, justify="left" if column in ("output", "result") else "right")
    for o in parity["outputs"]:
        result = "[green]pass[/]" if o["passed"] else f"[red]FAIL[/] {escape(o['note'])}".rstrip()
        table.add_row(
            escape(o["name"]),
            _number(o["max_abs"]),
            _number(o["max_rel"]),
            f"{o['mismatches']:,} / {o['size']:,}",
            f"{o['rtol']:g}",
            f"{o['atol']:g}",
            result,
        )
    return table


def parity_failure(result: dict) -> str:
    failed = [o for o in result["comparison"]["parity"]["outputs"] if not o["passed"]]
    first = failed[0]
    detail = first["note"] or (
        f"{first['mismatches']:,} of {first['size']:,} elements beyond rtol={first['rtol']:g}, atol={first['atol']:g}"
    )
    more = f" (and {len(failed) - 1} more outputs)" if len(failed) > 1 else ""
    return f"outputs differ: '{first['name']}': {detail}{more}"


def _number(x: float) -> str:
    return f"{x:.3g}"


def _ms(x: float) -> str:
    return f"{x:.4g} ms"


def _mb(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} MB"


def _parse_named_pairs(values: tuple[str, ...], option: str, convert) -> tuple:
    """``("y=A,B", "C,D")`` -> ``(convert("C,D"), {"y": convert("A,B")})``: one setting for all, and
    per-name ones; ``convert`` raises ValueError with the expected form on bad text."""
    overall, per_name = None, {}
    for text in values:
        name, _, pair = text.rpartition("=")
        try:
            value = convert(pair)
        except ValueError as exc:
            raise click.BadParameter(f"'{text}' is not {exc}", param_hint=option) from None
        if name:
            per_name[name] = value
        else:
            overall = value
    return overall, per_name


def _tolerance(text: str) -> tuple[float, float]:
    form = "[NAME=]RTOL,ATOL with non-negative numbers"
    try:
        rtol, atol = (float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(form) from None
    if not (rtol >= 0 and atol >= 0):
        raise ValueError(form)
    return rtol, atol


def _int_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError("[NAME=]LOW,HIGH with two integers") from None
    return low, high


@contextlib.contextmanager
def progress_bar() -> Iterator[Callable[[str, float], None]]:
    """A transient rich progress bar on stderr (silent when not a terminal).

    It appears at the first update, after the CUDA probe, which briefly redirects stderr.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    bar = Progress(*columns, console=console, transient=True, disable=not console.is_terminal)
    task = bar.add_task("starting", total=1.0)

    def update(what: str, fraction: float) -> None:
        bar.start()  # no-op once started
        bar.update(task, description=what, completed=fraction)

    try:
        yield update
    finally:
        if bar.live.is_started:
            bar.stop()
