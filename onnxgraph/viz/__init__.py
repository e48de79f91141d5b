"""Pictures of a model's graph: Graphviz DOT (and SVG through ``dot``) and a self-contained HTML page."""

from __future__ import annotations

from onnxgraph.viz.dot import render_svg, to_dot
from onnxgraph.viz.html import to_html
from onnxgraph.viz.view import GraphView, build_view, load_node_data

__all__ = ["GraphView", "build_view", "load_node_data", "render_svg", "to_dot", "to_html"]
