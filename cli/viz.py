"""``onnxgraph viz``: draw a model as DOT, SVG (through Graphviz) or a self-contained HTML page."""

from __future__ import annotations

import os

import click

from onnxgraph.cli.errors import BadInput
from onnxgraph.cli.options import allow_outside_option, examples, json_flag, model_argument, output_option
from onnxgraph.cli.output import emit, printable, progress

_FORMATS = (".dot", ".svg", ".html")


@click.command(
    epilog=examples(
        "onnxgraph viz model.onnx -o model.html",
        "onnxgraph viz model.onnx -o model.svg --max-nodes 200",
        "onnxgraph viz model.onnx -o model.html --node-data latency.json",
    ),
)
@model_argument
@output_option("OUT.dot, OUT.svg (needs Graphviz) or OUT.html (opens offline).")
@click.option("--max-nodes", type=click.IntRange(1), help="Draw at most N nodes (in topological order).")
@click.option(
    "--node-data",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE.json",
    help='Colour nodes by a figure per node: {"node name": number} or {"label": ..., "values": {...}}.',
)
@allow_outside_option
@json_flag
def viz(
    model: str, output: str, max_nodes: int | None, node_data: str | None, allow_outside: bool, as_json: str | None
) -> None:
    """Draw MODEL's graph (subgraphs as clusters) to OUTPUT; the suffix picks the format."""
    import onnxgraph
    from onnxgraph.fsutil import atomic_write
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.viz import build_view, load_node_data, render_svg, to_dot, to_html

    suffix = os.path.splitext(output)[1].lower()
    if suffix not in _FORMATS:
        raise BadInput(f"{output}: the suffix must be one of {', '.join(_FORMATS)}")
    check_outputs(
        [Output(output, "-o"), Output(as_json, "--json")], models=[model], reads=[node_data] if node_data else []
    )
    from onnxgraph.errors import OnnxGraphError
    from onnxgraph.shape_inference import infer_shapes

    figures, label = load_node_data(node_data) if node_data else (None, None)
    with progress(f"loading {model}") as update:
        loaded = onnxgraph.load(model, allow_external_data_outside=allow_outside)
        update("inferring shapes")
        try:
            infer_shapes(loaded)  # shapes for the hover details; a model inference rejects is still drawn
        except OnnxGraphError as exc:
            click.echo(f"warning: {printable(exc)}; drawing without inferred shapes", err=True)
        update("laying out the graph")
        view = build_view(loaded, max_nodes=max_nodes, node_data=figures, data_label=label)
        update(f"drawing {output}")
        if suffix == ".html":
            payload = to_html(view).encode("utf-8")
        elif suffix == ".svg":
            payload = render_svg(to_dot(view))
        else:
            payload = to_dot(view).encode("utf-8")
        with atomic_write(output) as f:
            f.write(payload)
    shown = sum(1 for n in view.nodes if n.kind == "op")
    more = f" ({view.omitted} more left out; raise --max-nodes)" if view.omitted else ""
    data = {"output": output, "format": suffix[1:], "nodes": shown, "omitted": view.omitted}
    emit(data, as_json, lambda: click.echo(f"wrote {output}: {shown} nodes{more}"))
