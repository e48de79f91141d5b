"""``onnxgraph info``: what a model is made of."""

from __future__ import annotations

import json

import click
from onnxgraph.cli.options import json_flag, model_argument


@click.command()
@model_argument
@json_flag
def info(model: str, as_json: bool) -> None:
    """Show a model's opsets, interface, op counts, parameters, external data and functions."""
    import onnxgraph
    from onnxgraph.inspection import summarize

    summary = summarize(onnxgraph.load(model), model)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        _render(summary)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _render(s: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    opsets = ", ".join(f"{d} {v}" for d, v in s["opset_imports"].items())
    producer = " ".join(x for x in (s["producer"]["name"], s["producer"]["version"]) if x) or "-"
    params = s["parameters"]
    head = Table.grid(padding=(0, 2))
    head.add_row("[bold]model[/]", escape(str(s["path"])))
    head.add_row("[bold]IR version[/]", str(s["ir_version"]))
    head.add_row("[bold]opsets[/]", opsets)
    head.add_row("[bold]producer[/]", producer)
    head.add_row("[bold]nodes[/]", f"{s['nodes']['total']} ({s['nodes']['subgraphs']} subgraphs)")
    head.add_row(
        "[bold]parameters[/]",
        f"{params['elements']:,} in {params['initializers']} initializers ({_human_bytes(params['bytes'])})",
    )
    console.print(head)

    io = Table(title="inputs and outputs", title_justify="left")
    for column in ("", "name", "type"):
        io.add_column(column)
    for kind in ("inputs", "outputs"):
        for v in s[kind]:
            io.add_row(kind[:-1], escape(v["name"]), escape(v["type"]))
    console.print(io)

    ops = Table(title="operators", title_justify="left")
    ops.add_column("op type")
    ops.add_column("count", justify="right")
    for op, n in s["nodes"]["by_op_type"].items():
        ops.add_row(escape(op), str(n))
    console.print(ops)

    if s["external_data"]:
        ext = Table(title="external data", title_justify="left")
        for column in ("file", "size", "tensors"):
            ext.add_column(column)
        for f in s["external_data"]:
            ext.add_row(escape(f["file"]), _human_bytes(f["bytes"]), str(f["tensors"]))
        console.print(ext)
    if s["functions"]:
        fn = Table(title="functions", title_justify="left")
        for column in ("domain", "name", "nodes"):
            fn.add_column(column)
        for f in s["functions"]:
            fn.add_row(escape(f["domain"]), escape(f["name"]), str(f["nodes"]))
        console.print(fn)
