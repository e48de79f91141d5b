"""``onnxgraph compare``: where two models (or two execution providers) part ways, value by value."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import BadInput, CheckFailed
from onnxgraph.cli.options import (
    allow_outside_option,
    examples,
    input_shape_option,
    inputs_option,
    json_flag,
    parse_input_shapes,
    seed_option,
)

_PROVIDERS = ["auto", "cpu", "cuda"]


@click.command(
    epilog=examples(
        "onnxgraph compare model.onnx model.opt.onnx",
        "onnxgraph compare model.onnx model.fp16.onnx --node-data err.json",
        "onnxgraph compare model.onnx --provider cpu --against cuda --json",
    )
)
@click.argument("model_a", metavar="A", type=click.Path(path_type=str))
@click.argument("model_b", metavar="[B]", required=False, type=click.Path(path_type=str))
@click.option(
    "--provider",
    type=click.Choice(_PROVIDERS),
    default="cpu",
    show_default=True,
    help="Execution provider for A (and for B unless --against is given).",
)
@click.option(
    "--against",
    type=click.Choice(_PROVIDERS),
    default=None,
    help="Compare A with itself on this provider instead of with a model B.",
)
@inputs_option
@input_shape_option
@seed_option
@click.option("--rtol", type=float, default=None, help="Relative tolerance for every value (default: per dtype).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance for every value (default: per dtype).")
@click.option(
    "--node-data",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE.json",
    help="Write log10 of each node's max abs error for `viz --node-data`.",
)
@click.option("--all", "show_all", is_flag=True, help="List every compared value, not just the first divergences.")
@click.option(
    "--chunk-mb",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Expose at most this many MiB of intermediate values per onnxruntime session.",
)
@allow_outside_option
@json_flag
def compare(
    model_a: str,
    model_b: str | None,
    provider: str,
    against: str | None,
    inputs: str | None,
    input_shapes: tuple[str, ...],
    seed: int,
    rtol: float | None,
    atol: float | None,
    node_data: str | None,
    show_all: bool,
    chunk_mb: int,
    allow_outside: bool,
    as_json: str | None,
) -> None:
    """Run A and B on the same inputs with every intermediate value exposed and show where they part ways.

    Values are matched by name, or through the renames that `optimize` and `convert` record in the
    models they write. Exits 1 when the graph outputs differ beyond tolerance, 0 otherwise.
    """
    import onnxgraph
    from onnxgraph.cli.bench import progress_bar
    from onnxgraph.cli.output import emit, write_json
    from onnxgraph.debug.feeds import model_feeds
    from onnxgraph.debug.layerwise import compare_layerwise
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.runtime.providers import resolve_providers

    if (model_b is None) == (against is None):
        raise BadInput("give either a second model B or --against PROVIDER")
    if (rtol is None) != (atol is None):
        raise BadInput("--rtol and --atol go together")
    models = [model_a] if model_b is None else [model_a, model_b]
    check_outputs(
        [Output(node_data, "--node-data"), Output(as_json, "--json")], models=models, reads=[inputs] if inputs else []
    )
    providers_a = resolve_providers(provider)
    providers_b = resolve_providers(against or provider)
    a = onnxgraph.load(model_a, allow_external_data_outside=allow_outside)
    b = onnxgraph.load(model_b, allow_external_data_outside=allow_outside) if model_b is not None else None
    feeds = model_feeds(a, inputs, parse_input_shapes(input_shapes), seed)
    with progress_bar() as update:
        report = compare_layerwise(
            a,
            b,
            feeds,
            providers_a=providers_a,
            providers_b=providers_b,
            tolerance=None if rtol is None or atol is None else (rtol, atol),
            chunk_bytes=chunk_mb << 20,
            labels=(model_a, model_b or f"{model_a} on {against}"),
            on_progress=lambda done, total: update(f"comparing values {done}/{total}", done / total),
        )
    if node_data:
        write_json(report.node_data(), node_data)
    emit(report.to_json(), as_json, lambda: _render(report, model_a, model_b or f"{model_a} on {against}", show_all))
    if not report.passed:
        bad = [c.name for c in report.outputs if not c.passed]
        first = report.origins[0].match.a if report.origins else None
        where = f"; first divergence at '{first.name}' ({first.op_type} {first.node or ''})".rstrip() if first else ""
        raise CheckFailed(f"outputs differ beyond tolerance: {', '.join(bad)}{where}")


def _render(report, name_a: str, name_b: str, show_all: bool) -> None:
    from rich.table import Table

    from onnxgraph.cli.output import escape, stdout_console

    console = stdout_console()
    console.print(
        f"[bold]{escape(name_a)}[/] vs [bold]{escape(name_b)}[/]: {len(report.values)} of "
        f"{report.total} values compared ({len(report.unmatched)} without a partner)"
    )
    if show_all:
        rows, title = report.values, "every value (err/tol > 1: diverged)"
    elif report.origins:
        rows, title = report.origins, "first divergences (the error jumps past the tolerance here)"
    else:
        rows, title = report.worst(), "no value diverged on its own; largest errors"
    table = Table(title=title, title_justify="left")
    for column in ("value", "A node (op)", "B node (op)", "max abs", "max rel", "err/tol", ""):
        table.add_column(column, justify="left" if column in ("value", "A node (op)", "B node (op)", "") else "right")
    for v in rows:
        c, m = v.comparison, v.match
        status = "[red]FIRST[/]" if v.origin else ("[yellow]diverged[/]" if v.diverged else "[green]ok[/]")
        name = m.a.name if m.a.name == m.b.name else f"{m.a.name} -> {m.b.name}"
        table.add_row(
            escape(name),
            escape(f"{m.a.node} ({m.a.op_type})"),
            escape(f"{m.b.node} ({m.b.op_type})"),
            f"{c.max_abs:.3g}",
            f"{c.max_rel:.3g}",
            f"{v.ratio:.3g}",
            status,
        )
    console.print(table)
    outputs = Table(title="graph outputs (plain runs)", title_justify="left")
    for column in ("output", "max abs", "max rel", "off", "rtol / atol", ""):
        outputs.add_column(column, justify="left" if column in ("output", "") else "right")
    for c in report.outputs:
        status = "[green]ok[/]" if c.passed else f"[red]{escape(c.note) or 'differs'}[/]"
        outputs.add_row(
            escape(c.name),
            f"{c.max_abs:.3g}",
            f"{c.max_rel:.3g}",
            f"{c.mismatches}/{c.size}",
            f"{c.rtol:g} / {c.atol:g}",
            status,
        )
    console.print(outputs)
    console.print("[green]outputs match[/]" if report.passed else "[red]outputs differ beyond tolerance[/]")
