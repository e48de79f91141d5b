"""Graphviz DOT text for a :class:`GraphView`, and SVG through Graphviz's ``dot`` program."""

from __future__ import annotations

import shutil
import subprocess

from onnxgraph.children import parent_death_hook
from onnxgraph.errors import OnnxGraphError, one_line
from onnxgraph.viz.colors import scale_color
from onnxgraph.viz.view import GraphView, ViewNode

_FILL = {"op": "#dbe8ff", "input": "#d9f2d9", "output": "#fde2c8", "more": "#eeeeee"}
_SHAPE = {"op": "box", "input": "ellipse", "output": "ellipse", "more": "note"}


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _node_line(node: ViewNode, low: float, high: float) -> str:
    label = node.op if node.kind != "op" or not node.name else f"{node.op}\n{node.name}"
    fill = scale_color(node.value, low, high) if node.value is not None else _FILL[node.kind]
    tooltip = "\n".join(
        [f"{k} = {v}" for k, v in node.attrs.items()]
        + [f"in  {n}: {t}" for n, t in node.inputs]
        + [f"out {n}: {t}" for n, t in node.outputs]
    )
    if node.value is not None:
        label += f"\n{node.value:g}"
    return (
        f'{_quote(node.id)} [label={_quote(label)}, shape={_SHAPE[node.kind]}, style="rounded,filled", '
        f"fillcolor={_quote(fill)}, tooltip={_quote(tooltip or node.op)}];"
    )


def to_dot(view: GraphView) -> str:
    """The view as a DOT digraph: subgraphs and repeated blocks as clusters, edges labelled with types."""
    values = [n.value for n in view.nodes if n.value is not None]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    members: dict[str | None, list[ViewNode]] = {}
    for node in view.nodes:
        members.setdefault(node.cluster, []).append(node)
    children: dict[str | None, list[dict]] = {}
    for cluster in view.clusters:
        children.setdefault(cluster["parent"], []).append(cluster)
    lines = [
        f"digraph {_quote(view.title)} {{",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=11]; edge [fontname="Helvetica", fontsize=9, color="#666666"];',
    ]

    def emit(cluster_id: str | None, indent: str) -> None:
        by_block: dict[str | None, list[ViewNode]] = {}
        for node in members.get(cluster_id, []):
            by_block.setdefault(node.block, []).append(node)
        for block, nodes in by_block.items():
            inner = indent
            if block is not None:
                lines.append(f"{indent}subgraph {_quote('cluster_block ' + block)} {{")
                lines.append(f'{indent}  label={_quote(block)}; style=dashed; color="#999999";')
                inner = indent + "  "
            lines.extend(inner + _node_line(n, low, high) for n in nodes)
            if block is not None:
                lines.append(f"{indent}}}")
        for cluster in children.get(cluster_id, []):
            lines.append(f"{indent}subgraph {_quote('cluster_' + cluster['id'])} {{")
            lines.append(f'{indent}  label={_quote(cluster["label"])}; style="rounded"; color="#4a6fa5";')
            emit(cluster["id"], indent + "  ")
            lines.append(f"{indent}}}")

    emit(None, "  ")
    for source, target, label in view.edges:
        lines.append(
            f"  {_quote(source)} -> {_quote(target)} [label={_quote(label.split(': ', 1)[-1])}, "
            f"tooltip={_quote(label)}];"
        )
    if values:
        legend = f"{view.data_label}: {low:g} (blue) .. {high:g} (red)"
        lines.append(f"  legend [shape=plaintext, label={_quote(legend)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_svg(dot_text: str, *, timeout: float = 600) -> bytes:
    """SVG drawn by Graphviz's ``dot``.

    Raises:
        OnnxGraphError: Graphviz is not installed or ``dot`` fails.
    """
    program = shutil.which("dot")
    if program is None:
        raise OnnxGraphError(
            "SVG output needs Graphviz's 'dot' program (apt-get install graphviz); write .dot or .html instead"
        )
    try:
        done = subprocess.run(
            [program, "-Tsvg"],
            input=dot_text.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=parent_death_hook(),
        )
    except subprocess.TimeoutExpired as exc:
        raise OnnxGraphError(f"Graphviz 'dot' took longer than {timeout:.0f} s; try --max-nodes") from exc
    if done.returncode != 0:
        message = one_line(done.stderr.decode("utf-8", "replace")) or f"exit code {done.returncode}"
        raise OnnxGraphError(f"Graphviz 'dot' failed: {message}")
    return done.stdout
