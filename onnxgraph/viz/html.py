"""A self-contained HTML page for a :class:`GraphView`: inline CSS, JS and data, no network access."""

from __future__ import annotations

import html
import json
from importlib import resources

from onnxgraph.viz.view import GraphView

COLLAPSE_ABOVE = 300
"""Repeated blocks start collapsed when the view has more nodes than this."""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
{css}
</style>
</head>
<body>
<div id="bar">
  <span class="title">{title}</span>
  <span>{summary}</span>
  <button id="fit">fit</button>
  <button id="expand">expand blocks</button>
  <button id="collapse">collapse blocks</button>
  <span id="legend" style="display:none"><span id="data-label"></span> <span id="low"></span>
    <span class="scale"></span> <span id="high"></span></span>
</div>
<svg id="canvas" xmlns="http://www.w3.org/2000/svg">
  <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
    <path d="M0,0 L10,5 L0,10 z" fill="#8a8a8a"/></marker></defs>
  <g id="viewport"></g>
</svg>
<div id="tooltip"></div>
<script type="application/json" id="graph-data">{data}</script>
<script>
{js}
</script>
</body>
</html>
"""


def _asset(name: str) -> str:
    return resources.files("onnxgraph.viz").joinpath(name).read_text(encoding="utf-8")


_SCRIPT_UNSAFE = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(data: object) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` element, whatever strings it holds.

    ``<``, ``>`` and ``&`` become JSON's ``\\u003c``-style escapes, so a model string such as
    ``</script>`` or ``<!--<script>`` cannot end the element or switch the HTML parser into the
    script's escaped states; ``JSON.parse`` reads the same strings back.
    """
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).translate(_SCRIPT_UNSAFE)


def to_html(view: GraphView) -> str:
    """The page: pan with the mouse, zoom with the wheel, hover for details, click blocks to fold."""
    payload = view.to_json()
    ops = sum(1 for n in view.nodes if n.kind == "op")
    payload["collapse_blocks"] = len(view.nodes) > COLLAPSE_ABOVE
    data = script_json(payload)
    summary = f"{ops} nodes" + (f", {view.omitted} left out" if view.omitted else "")
    return _TEMPLATE.format(
        title=html.escape(view.title),
        summary=html.escape(summary),
        css=_asset("page.css"),
        js=_asset("page.js"),
        data=data,
    )
