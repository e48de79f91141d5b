"""``onnxgraph optimize``: simplify a model, verify it on onnxruntime, report what changed."""

from __future__ import annotations

import time

import click

from onnxgraph.cli.errors import BadInput, CheckFailed
from onnxgraph.cli.options import (
    allow_outside_option,
    examples,
    input_shape_option,
    json_output,
    model_argument,
    output_option,
    overwrite_option,
    parse_input_shapes,
)
from onnxgraph.cli.output import counted, emit, human_bytes, save_checked, stdout_console, write_json

_DEFAULT_SIZE_LIMIT = 1_000_000  # optimizers.fold.DEFAULT_SIZE_LIMIT, not imported so --help stays fast
_MODEL_TYPES = ("bert", "gpt2", "bart", "t5", "vit", "clip", "phi", "gpt_neox", "qwen3", "swin", "conformer")
"""Common keys of onnxruntime.transformers.optimizer.MODEL_TYPES (imported lazily, hence listed here)."""


@click.command(
    epilog=examples(
        "onnxgraph optimize model.onnx -o model.opt.onnx",
        "onnxgraph optimize model.onnx -o model.opt.onnx --input-shape input_ids=1,128 --bench --json report.json",
        "onnxgraph optimize gpt2.onnx -o gpt2.ort.onnx --target ort --model-type gpt2",
    ),
)
@model_argument
@output_option("Where to write the optimized model (weights in external data stay external).")
@click.option(
    "--passes",
    default=None,
    metavar="LIST",
    help="Comma-separated passes to run instead of the default pipeline (see docs/optimize.md).",
)
@click.option(
    "--disable",
    "disable",
    multiple=True,
    metavar="PASS:REWRITE",
    help="Switch off one rewrite of a pass, e.g. noop:identity or fuse:matmul_add_to_gemm (repeatable).",
)
@click.option("--no-verify", is_flag=True, help="Skip running the original and the result on onnxruntime.")
@click.option(
    "--verify-whole",
    is_flag=True,
    help="Verify by running the original from its file and every result whole, not only the changed regions.",
)
@json_output("--report-json")
@click.option(
    "--size-limit",
    type=click.IntRange(min=0),
    default=_DEFAULT_SIZE_LIMIT,
    show_default=True,
    help="Largest constant (in elements) that folding may create.",
)
@input_shape_option
@overwrite_option
@allow_outside_option
@click.option(
    "--bench",
    "run_bench",
    is_flag=True,
    help="Then benchmark the original against the result on onnxruntime (as `onnxgraph bench A B`).",
)
@click.option(
    "--target",
    type=click.Choice(["standard", "ort"]),
    default="standard",
    show_default=True,
    help="ort: then onnxruntime's transformer fusions into com.microsoft ops (for onnxruntime-only deployment).",
)
@click.option(
    "--model-type",
    type=click.Choice(_MODEL_TYPES),
    default="bert",
    show_default=True,
    help="Model family for --target ort (onnxruntime's transformers optimizer).",
)
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Execution provider for --bench.",
)
def optimize(
    model: str,
    output: str,
    passes: str | None,
    disable: tuple[str, ...],
    no_verify: bool,
    verify_whole: bool,
    as_json: str | None,
    size_limit: int,
    input_shapes: tuple[str, ...],
    overwrite: bool,
    allow_outside: bool,
    run_bench: bool,
    target: str,
    model_type: str,
    provider: str,
) -> None:
    """Optimize MODEL and write it to OUT, verified against the original on onnxruntime.

    Exits 0 with a warning when a pass had to be rolled back to keep the outputs correct, 1
    when no correct model could be produced, and 2 when it cannot be verified: the original does
    not run on onnxruntime, or a run exceeds the check's time budget (nothing is written then).
    With --bench, also exits 1 when the benchmark's output parity check fails.
    """
    from rich.console import Console

    from onnxgraph.optimizers import VerificationFailed
    from onnxgraph.optimizers import optimize as run_optimize
    from onnxgraph.optimizers.verify import VerificationUnavailable
    from onnxgraph.pathguard import Output, check_outputs

    check_outputs([Output(output, "-o", model=True), Output(as_json, "--json")], models=[model], overwrite=overwrite)
    names = [p.strip() for p in passes.split(",") if p.strip()] if passes is not None else None
    shapes = parse_input_shapes(input_shapes)
    disabled = _parse_disabled(disable)
    console = Console(stderr=True)
    try:
        with console.status("loading", spinner="dots") as status:
            optimized, report = run_optimize(
                model,
                passes=names,
                verify=not no_verify,
                verify_regions=not verify_whole,
                size_limit=size_limit,
                input_shapes=shapes,
                on_progress=status.update,
                disabled=disabled,
                allow_external_data_outside=allow_outside,
                target=target,
                model_type=model_type,
            )
    except VerificationFailed as exc:
        if as_json:
            write_json(exc.report.to_dict(), as_json)
        raise CheckFailed(str(exc)) from exc
    except VerificationUnavailable as exc:
        raise BadInput(f"{model}: cannot verify: {exc} (use --no-verify to skip verification)") from exc
    # Weights that came in external data leave in external data, new folded ones included;
    # verification has run the result on onnxruntime already (the check adds onnx.checker).
    saving = time.perf_counter()
    save_checked(
        optimized,
        output,
        source=None,
        input_shapes=shapes,
        external_data="auto" if report.before.external_bytes else None,
    )
    report.timings["save"] = time.perf_counter() - saving
    summary = report.to_dict()
    _warn_rollbacks(report)
    if run_bench:
        from onnxgraph.cli.bench import bench_pair

        summary["bench"] = bench_pair(model, output, provider, shapes)
    emit(summary, as_json, lambda: _render(report, model, output, summary.get("bench")))
    if run_bench and not summary["bench"]["comparison"]["parity"]["passed"]:
        from onnxgraph.cli.bench import parity_failure

        raise CheckFailed(parity_failure(summary["bench"]))


def _parse_disabled(values: tuple[str, ...]) -> dict[str, list[str]]:
    """``("noop:identity",)`` -> ``{"noop": ["identity"]}``; names are checked by the optimizer."""
    disabled: dict[str, list[str]] = {}
    for text in values:
        name, sep, rewrite = text.partition(":")
        if not (sep and name and rewrite):
            raise click.BadParameter(f"'{text}' is not PASS:REWRITE", param_hint="--disable")
        disabled.setdefault(name, []).append(rewrite)
    return disabled


def _warn_rollbacks(report) -> None:
    from rich.console import Console

    from onnxgraph.cli.output import escape

    err = Console(stderr=True)
    for rollback in report.rollbacks:
        what = rollback.pass_name + (f" ({rollback.rewrite})" if rollback.rewrite else "")
        err.print(f"[yellow]warning:[/] rolled back {escape(what)}: {escape(rollback.reason)}")
    if report.contrib is not None and not report.contrib.applied:
        err.print(f"[yellow]warning:[/] kept the standard-op model: {escape(report.contrib.reason)}")


def _render(report, model: str, output: str, bench: dict | None) -> None:
    from rich.table import Table

    from onnxgraph.cli.output import escape

    console = stdout_console()
    console.print(f"[bold]{escape(model)}[/] -> [bold]{escape(output)}[/] in {report.seconds:.2f} s")
    size = Table()
    for column in ("", "before", "after", "change"):
        size.add_column(column, justify="right" if column else "left")
    b, a = report.before, report.after
    for label, x, y, fmt in (
        ("nodes", b.nodes, a.nodes, str),
        ("initializers", b.initializers, a.initializers, str),
        ("weights", b.bytes, a.bytes, human_bytes),
    ):
        change = f"{(y - x) / x:+.1%}" if x else "-"
        size.add_row(label, fmt(x), fmt(y), change)
    console.print(size)

    passes = Table(title=f"passes ({report.rounds} rounds)", title_justify="left")
    for column in ("pass", "changes", "time"):
        passes.add_column(column, justify="right" if column == "time" else "left")
    for p in report.passes:
        changes = ", ".join(f"{k} {v}" for k, v in p.changes.items()) or "-"
        passes.add_row(p.name, escape(changes), f"{p.seconds * 1000:.0f} ms")
    console.print(passes)
    if report.contrib is not None and report.contrib.applied:
        fused = ", ".join(f"{k} {v}" for k, v in sorted(report.contrib.contrib_ops.items())) or "none"
        console.print(f"onnxruntime fusions ({escape(report.contrib.model_type)}): {escape(fused)}")

    phases = ", ".join(f"{name.replace('_', ' ')} {seconds:.2f} s" for name, seconds in report.timings.items())
    console.print(f"time: {phases}")
    v = report.verification
    if v is None:
        console.print("verification: [yellow]skipped[/] (--no-verify)")
    else:
        worst = max((c.max_abs for c in v.outputs), default=0.0)
        outputs = counted(len(v.outputs), "output")
        line = f"verification: [green]passed[/], {outputs} within tolerance, max abs error {worst:.3g}"
        if v.mode == "regions":
            line = (
                f"verification: [green]passed[/] by {counted(v.regions, 'changed region')}, "
                f"{counted(v.region_values, 'value')} equal to the original's; {counted(len(v.outputs), 'output')} "
                f"compared (max abs error {worst:.3g}), {len(v.unchanged_outputs)} computed by unchanged nodes only"
            )
        if v.skipped:
            line += f" ({len(v.skipped)} random outputs not compared)"
        console.print(line)
    if bench is not None:
        from onnxgraph.cli.bench import print_report

        print_report(bench, console)
