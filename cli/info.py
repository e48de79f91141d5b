"""``onnxgraph info``: what a model is made of, what it costs, and how two models differ."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import BadInput
from onnxgraph.cli.options import allow_outside_option, examples, input_shape_option, json_flag, parse_input_shapes
from onnxgraph.cli.output import emit, human_bytes, progress, stdout_console


@click.command(
    epilog=examples(
        "onnxgraph info model.onnx",
        "onnxgraph info model.onnx --input-shape input_ids=1,128 --json | jq .compute",
        "onnxgraph info model.onnx model.opt.onnx --diff",
    ),
)
@click.argument("models", nargs=-1, required=True, metavar="MODEL [MODEL_B]")
@click.option("--diff", "show_diff", is_flag=True, help="Compare two models: ops, parameters, FLOPs, interface.")
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, help="Heaviest nodes to list.")
@input_shape_option
@allow_outside_option
@json_flag
def info(
    models: tuple[str, ...],
    show_diff: bool,
    top: int,
    input_shapes: tuple[str, ...],
    allow_outside: bool,
    as_json: str | None,
) -> None:
    """Show a model's opsets, interface, op counts, parameters, FLOPs, activation memory and functions.

    Symbolic input dimensions that --input-shape does not fix are sized by name (batch 1, sequence 128,
    samples 16000, height/width 224, others 1); totals say "at least" when some nodes cannot be
    counted. With --diff and two models, show what differs between them.
    """
    from onnxgraph.inspection import diff

    shapes = parse_input_shapes(input_shapes)
    if show_diff and len(models) != 2:
        raise BadInput("--diff compares exactly two models")
    if not show_diff and len(models) != 1:
        raise BadInput("give one model (or two with --diff)")
    import onnxgraph
    from onnxgraph.pathguard import Output, check_outputs

    check_outputs([Output(as_json, "--json")], models=list(models))
    with progress("loading") as update:
        loaded = []
        for path in models:
            update(f"loading {path}")
            loaded.append(onnxgraph.load(path, allow_external_data_outside=allow_outside))
        if show_diff:  # each model takes the --input-shape entries that name its inputs
            known = {v.name for m in loaded for v in m.graph.inputs}
            unknown = sorted(set(shapes) - known)
            if unknown:
                raise BadInput(f"--input-shape: neither model has an input named '{unknown[0]}'")
        reports = []
        for m, path in zip(loaded, models):
            update(f"analysing {path}")
            reports.append(_report(m, path, shapes, top, strict=not show_diff))
    data = diff(*reports) if show_diff else reports[0]
    emit(data, as_json, lambda: _render_diff(data) if show_diff else _render(data))


def _report(model, path: str, shapes: dict[str, list[int]], top: int, strict: bool) -> dict:
    from onnxgraph.inspection import analyze, summarize

    summary = summarize(model, path)  # before analyze: the interface as declared, not as inferred
    if not strict:
        names = {v.name for v in model.graph.inputs}
        shapes = {k: v for k, v in shapes.items() if k in names}
    return summary | analyze(model, shapes, top)


def _human_count(n: float | None, unit: str = "") -> str:
    """``24 FLOPs``, ``3.64 GFLOPs`` (``unit`` empty: ``24``, ``3.64 G``); ``?`` for None."""
    if n is None:
        return "?"
    for prefix in ("", "K", "M", "G", "T"):
        if abs(n) < 1000 or prefix == "T":
            text = f"{n:.0f}" if prefix == "" else f"{n:.2f} {prefix}"
            break
        n /= 1000
    return f"{text}{unit}" if prefix else f"{text} {unit}".rstrip()


def _compute_line(compute: dict) -> str:
    """Totals, marked as lower bounds when some nodes could not be counted."""
    flops, macs = _human_count(compute["flops"], "FLOPs"), _human_count(compute["macs"], "MACs")
    if compute["complete"]:
        return f"{flops}, {macs}"
    unknown = compute["nodes_unknown"]
    ops = ", ".join(f"{op} {n}" for op, n in list(compute["unknown_by_op_type"].items())[:4])
    nodes = "1 node" if unknown == 1 else f"{unknown} nodes"
    return f"at least {flops}, at least {macs} ({nodes} not counted, unknown shapes or ops: {ops})"


def _op_flops(compute: dict, op: str, count: int) -> str:
    """An op type's FLOPs: ``?`` when none of its nodes could be counted, ``≥ N`` when some could not."""
    unknown = compute["unknown_by_op_type"].get(op, 0)
    if unknown == count:
        return "?"
    return ("≥ " if unknown else "") + _human_count(compute["by_op_type"].get(op, 0))


def _render(s: dict) -> None:
    from rich.table import Table

    from onnxgraph.cli.output import escape

    console = stdout_console()
    opsets = ", ".join(f"{d} {v}" for d, v in s["opset_imports"].items())
    producer = " ".join(x for x in (s["producer"]["name"], s["producer"]["version"]) if x) or "-"
    params, compute, memory = s["parameters"], s["compute"], s["activations"]
    head = Table.grid(padding=(0, 2))
    head.add_row("[bold]model[/]", escape(str(s["path"])))
    head.add_row("[bold]IR version[/]", str(s["ir_version"]))
    head.add_row("[bold]opsets[/]", opsets)
    head.add_row("[bold]producer[/]", producer)
    head.add_row("[bold]nodes[/]", f"{s['nodes']['total']} ({s['nodes']['subgraphs']} subgraphs)")
    head.add_row(
        "[bold]parameters[/]",
        f"{params['elements']:,} in {params['initializers']} initializers ({human_bytes(params['bytes'])})",
    )
    head.add_row("[bold]compute[/]", escape(_compute_line(compute)))
    head.add_row(
        "[bold]activations[/]",
        f"{human_bytes(memory['total_bytes'])} in all, {human_bytes(memory['peak_bytes'])} at peak",
    )
    assumed = s["shapes"]["assumed"]
    if assumed:
        text = ", ".join(f"{k}=" + ",".join(map(str, v)) for k, v in assumed.items())
        head.add_row(
            "[bold]assumed[/]",
            escape(text) + " (symbolic dims by name: batch 1, sequence 128, other 1; fix with --input-shape)",
        )
    console.print(head)

    console.print(
        _table(
            "inputs and outputs",
            ("", "name", "type"),
            [(kind[:-1], escape(v["name"]), escape(v["type"])) for kind in ("inputs", "outputs") for v in s[kind]],
        )
    )
    console.print(
        _table(
            "operators",
            ("op type", ">count", ">FLOPs"),
            [(escape(op), str(n), _op_flops(compute, op, n)) for op, n in s["nodes"]["by_op_type"].items()],
        )
    )
    if s["top_nodes"]:
        total = compute["flops"]
        console.print(
            _table(
                "heaviest nodes",
                ("node", "op type", ">FLOPs", ">share", "output"),
                [
                    (
                        escape(n["name"] or "-"),
                        escape(n["op_type"]),
                        _human_count(n["flops"]),
                        f"{100 * n['flops'] / total:.1f}%" if total else "-",
                        escape(", ".join(n["outputs"])),
                    )
                    for n in s["top_nodes"]
                ],
            )
        )
    if s["external_data"]:
        console.print(
            _table(
                "external data",
                ("file", "size", "tensors"),
                [(escape(f["file"]), human_bytes(f["bytes"]), str(f["tensors"])) for f in s["external_data"]],
            )
        )
    if s["functions"]:
        console.print(
            _table(
                "functions",
                ("domain", "name", "nodes"),
                [(escape(f["domain"]), escape(f["name"]), str(f["nodes"])) for f in s["functions"]],
            )
        )


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]):
    """A rich table; a column name starting with ">" is right-aligned."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        if column.startswith(">"):
            table.add_column(column[1:], justify="right")
        else:
            table.add_column(column, justify="left")
    for row in rows:
        table.add_row(*row)
    return table


def _render_diff(d: dict) -> None:
    from rich.table import Table

    from onnxgraph.cli.output import escape

    console = stdout_console()
    table = Table(title=f"{escape(str(d['a']))} (a) vs {escape(str(d['b']))} (b)", title_justify="left")
    table.add_column("", justify="left")
    for column in ("a", "b", "b - a"):
        table.add_column(column, justify="right")
    rows = [
        ("IR version", *d["ir_version"], False),
        ("nodes", *d["nodes"], False),
        ("parameters", *d["parameters"]["elements"], True),
        ("parameter bytes", *d["parameters"]["bytes"], True),
        ("FLOPs", *d["flops"], True),
        ("MACs", *d["macs"], True),
        ("nodes not counted", *d["nodes_unknown"], False),
    ]
    for label, a, b, human in rows:
        fmt = _human_count if human else str
        table.add_row(label, fmt(a), fmt(b), fmt(b - a) if a != b else "")
    console.print(table)
    if d["ops"]:
        console.print(
            _table(
                "op counts that differ",
                ("op type", ">a", ">b"),
                [(escape(op), str(a), str(b)) for op, (a, b) in d["ops"].items()],
            )
        )
    for kind in ("opset_imports", "inputs", "outputs"):
        change = d[kind]
        for name in change["added"]:
            console.print(f"{kind}: [green]+ {escape(str(name))}[/] (only in b)")
        for name in change["removed"]:
            console.print(f"{kind}: [red]- {escape(str(name))}[/] (only in a)")
        for c in change["changed"]:
            console.print(f"{kind}: {escape(str(c['name']))}: {escape(str(c['a']))} -> {escape(str(c['b']))}")
    if not (
        d["ops"]
        or any(d[k]["added"] or d[k]["removed"] or d[k]["changed"] for k in ("opset_imports", "inputs", "outputs"))
    ):
        console.print("same ops, opsets and interface")
