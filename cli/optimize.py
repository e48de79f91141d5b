"""``onnxgraph optimize``: simplify a model, verify it on onnxruntime, report what changed."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import BadInput, CheckFailed
from onnxgraph.cli.options import (
    input_shape_option,
    model_argument,
    overwrite_option,
    parse_input_shapes,
    refuse_overwriting_input,
)
from onnxgraph.cli.output import human_bytes, save_checked, write_json

_DEFAULT_SIZE_LIMIT = 1_000_000  # optimizers.fold.DEFAULT_SIZE_LIMIT, not imported so --help stays fast


@click.command()
@model_argument
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=str),
    help="Where to write the optimized model (weights in external data stay external).",
)
@click.option(
    "--passes",
    default=None,
    metavar="LIST",
    help="Comma-separated passes to run instead of the default pipeline (see docs/optimize.md).",
)
@click.option("--no-verify", is_flag=True, help="Skip running the original and the result on onnxruntime.")
@click.option(
    "--report-json",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    metavar="FILE",
    help="Also write the report as JSON.",
)
@click.option(
    "--size-limit",
    type=click.IntRange(min=0),
    default=_DEFAULT_SIZE_LIMIT,
    show_default=True,
    help="Largest constant (in elements) that folding may create.",
)
@input_shape_option
@overwrite_option
@click.option(
    "--bench",
    "run_bench",
    is_flag=True,
    help="Then benchmark the original against the result on onnxruntime (as `onnxgraph bench A B`).",
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
    no_verify: bool,
    report_json: str | None,
    size_limit: int,
    input_shapes: tuple[str, ...],
    overwrite: bool,
    run_bench: bool,
    provider: str,
) -> None:
    """Optimize MODEL and write it to OUT, verified against the original on onnxruntime.

    Exits 0 with a warning when a pass had to be rolled back to keep the outputs correct, and 1
    when no correct model could be produced (nothing is written then). With --bench, also exits 1
    when the benchmark's output parity check fails.
    """
    from rich.console import Console

    from onnxgraph.optimizers import VerificationFailed
    from onnxgraph.optimizers import optimize as run_optimize
    from onnxgraph.optimizers.verify import VerificationUnavailable

    refuse_overwriting_input(model, output, overwrite)
    names = [p.strip() for p in passes.split(",") if p.strip()] if passes is not None else None
    shapes = parse_input_shapes(input_shapes)
    console = Console(stderr=True)
    try:
        with console.status("loading", spinner="dots") as status:
            optimized, report = run_optimize(
                model,
                passes=names,
                verify=not no_verify,
                size_limit=size_limit,
                input_shapes=shapes,
                on_progress=status.update,
            )
    except VerificationFailed as exc:
        if report_json:
            write_json(exc.report.to_dict(), report_json)
        raise CheckFailed(str(exc)) from exc
    except VerificationUnavailable as exc:
        raise BadInput(f"{model}: cannot verify: {exc} (use --no-verify to skip verification)") from exc
    # Weights that came in external data leave in external data, new folded ones included;
    # verification has run the result on onnxruntime already (the check adds onnx.checker).
    save_checked(
        optimized,
        output,
        source=None,
        input_shapes=shapes,
        external_data="auto" if report.before.external_bytes else None,
    )
    summary = report.to_dict()
    _render(report, model, output)
    if run_bench:
        summary["bench"] = _bench(model, output, provider, shapes)
    if report_json:
        write_json(summary, report_json)
    if run_bench and not summary["bench"]["comparison"]["parity"]["passed"]:
        from onnxgraph.cli.bench import parity_failure

        raise CheckFailed(parity_failure(summary["bench"]))


def _bench(original: str, optimized: str, provider: str, shapes: dict) -> dict:
    """Benchmark the original (A) against the optimized model (B) and print the tables."""
    from onnxgraph.cli.bench import print_report, progress_bar
    from onnxgraph.runtime.benchmark import compare_models

    with progress_bar() as on_progress:
        result = compare_models(original, optimized, provider=provider, input_shapes=shapes, on_progress=on_progress)
    print_report(result)
    return result


def _render(report, model: str, output: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
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

    err = Console(stderr=True)
    for rollback in report.rollbacks:
        what = rollback.pass_name + (f" ({rollback.rewrite})" if rollback.rewrite else "")
        err.print(f"[yellow]warning:[/] rolled back {escape(what)}: {escape(rollback.reason)}")
    v = report.verification
    if v is None:
        console.print("verification: [yellow]skipped[/] (--no-verify)")
        return
    worst = max((c.max_abs for c in v.outputs), default=0.0)
    line = f"verification: [green]passed[/], {len(v.outputs)} outputs match, max abs error {worst:.3g}"
    if v.skipped:
        line += f" ({len(v.skipped)} random outputs not compared)"
    console.print(line)
