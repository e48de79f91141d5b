"""A drawing-neutral view of a model: nodes, edges, subgraph clusters and repeated blocks.

Both the DOT writer and the HTML page draw from this view, so they show the same thing.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from onnxgraph import types
from onnxgraph.attribute import AttrType
from onnxgraph.errors import OnnxGraphError
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.value import Value

_REPEATED_SEGMENT = re.compile(r"^(.*?)([._-]?)(\d+)$")
_MAX_ATTR_TEXT = 80


@dataclass
class ViewNode:
    """One box: an op, a graph input or a graph output."""

    id: str
    op: str
    name: str
    kind: str = "op"
    """"op", "input", "output" or "more" (the placeholder for nodes left out)."""
    cluster: str | None = None
    block: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    inputs: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[tuple[str, str]] = field(default_factory=list)
    value: float | None = None


@dataclass
class GraphView:
    """Everything a drawing needs."""

    title: str
    nodes: list[ViewNode] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    """(from id, to id, label)."""
    clusters: list[dict[str, Any]] = field(default_factory=list)
    """Subgraphs: id, label and parent cluster id (None at the top)."""
    blocks: list[dict[str, Any]] = field(default_factory=list)
    """Repeated blocks (from node names such as ``/layers.3/...``): id, label, size."""
    omitted: int = 0
    data_label: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "nodes": [vars(n) for n in self.nodes],
            "edges": [{"from": a, "to": b, "label": label} for a, b, label in self.edges],
            "clusters": self.clusters,
            "blocks": self.blocks,
            "omitted": self.omitted,
            "data_label": self.data_label,
        }


def _attr_text(attr) -> str:
    if attr.type in (AttrType.GRAPH, AttrType.GRAPHS):
        return "<subgraph>"
    value = attr.value
    if hasattr(value, "dims") and hasattr(value, "elem_type"):
        text = f"tensor {types.dtype_name(value.elem_type)}[{','.join(map(str, value.dims))}]"
        if value.size <= 8:
            text += " " + str(value.numpy().tolist())
        return text
    text = str(value.decode() if isinstance(value, bytes) else value)
    return text if len(text) <= _MAX_ATTR_TEXT else text[: _MAX_ATTR_TEXT - 1] + "…"


def _describe(value: Value | None) -> tuple[str, str]:
    if value is None:
        return ("", "omitted")
    kind = types.describe_type(value.type) if value.type is not None else "?"
    if value.is_initializer() and value.const_value is not None:
        tensor = value.const_value
        kind = f"{types.dtype_name(tensor.elem_type)}[{','.join(map(str, tensor.dims))}] (weight)"
    return (value.name or "", kind)


def repeated_block(name: str) -> str | None:
    """The block a node belongs to by its name: ``/model/layers.3/attn/MatMul`` -> ``/model/layers.3``."""
    parts = name.split("/")
    for i, part in enumerate(parts[:-1]):
        match = _REPEATED_SEGMENT.match(part)
        if match and match.group(1):
            return "/".join(parts[: i + 1])
    return None


def _stem(block: str) -> str:
    match = _REPEATED_SEGMENT.match(block)
    return match.group(1) if match else block


def load_node_data(path: str) -> tuple[dict[str, float], str]:
    """Read ``--node-data``: ``{"node name": number}`` or ``{"label": "...", "values": {...}}``.

    Raises:
        OnnxGraphError: the file is missing, not JSON, or holds something other than numbers.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise OnnxGraphError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise OnnxGraphError(f"{path}: not a JSON file ({exc})") from exc
    label = os.path.splitext(os.path.basename(path))[0]
    if isinstance(data, dict) and isinstance(data.get("values"), dict):
        label, data = str(data.get("label", label)), data["values"]
    if not isinstance(data, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in data.values()
    ):
        raise OnnxGraphError(f'{path}: expected {{"node name": number, ...}} (or {{"label": ..., "values": {{...}}}})')
    return {str(k): float(v) for k, v in data.items()}, label


class _ViewBuilder:
    def __init__(self, model: Model, max_nodes: int | None, node_data: dict[str, float] | None):
        self.model = model
        self.max_nodes = max_nodes
        self.node_data = node_data or {}
        self.view = GraphView(model.graph.name or "graph")
        self.ids: dict[int, str] = {}
        self.value_source: dict[int, str] = {}
        self.matched: set[str] = set()

    def build(self) -> GraphView:
        graph = self.model.graph
        for value in graph.inputs:
            if not value.is_initializer():
                self._add_value_node(value, "input")
        order = list(self._ordered(graph, None))
        kept = order if self.max_nodes is None else order[: self.max_nodes]
        self.view.omitted = len(order) - len(kept)
        for node, cluster in kept:
            self._add_op(node, cluster)
        for node, _ in kept:
            self._connect(node)
        if self.view.omitted:
            self.view.nodes.append(ViewNode("more", f"… {self.view.omitted} more nodes", "", kind="more"))
        for value in graph.outputs:
            out = self._add_value_node(value, "output")
            source = self.value_source.get(id(value))
            if source is not None:
                self.view.edges.append((source, out.id, _describe(value)[1]))
        self._find_blocks()
        return self.view

    def _ordered(self, graph: Graph, cluster: str | None):
        for node in graph.topological_order():
            yield node, cluster
            for attr in node.attributes.values():
                for i, sub in enumerate(attr.subgraphs()):
                    sub_id = f"cluster{len(self.view.clusters)}"
                    suffix = f"[{i}]" if attr.type == AttrType.GRAPHS else ""
                    label = f"{node.op_type} {node.name or ''} {attr.name}{suffix}".replace("  ", " ")
                    self.view.clusters.append({"id": sub_id, "label": label, "parent": cluster})
                    yield from self._ordered(sub, sub_id)

    def _add_value_node(self, value: Value, kind: str) -> ViewNode:
        name, kind_text = _describe(value)
        node = ViewNode(f"{kind}:{name}", name, name, kind=kind, outputs=[(name, kind_text)])
        self.view.nodes.append(node)
        if kind == "input":
            self.value_source[id(value)] = node.id
        return node

    def _add_op(self, node: Node, cluster: str | None) -> None:
        node_id = f"n{len(self.ids)}"
        self.ids[id(node)] = node_id
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        value = None
        for key in (node.name, *(o.name for o in node.outputs)):
            if key and key in self.node_data:
                value = self.node_data[key]
                self.matched.add(key)
                break
        self.view.nodes.append(
            ViewNode(
                node_id,
                op,
                node.name,
                cluster=cluster,
                block=repeated_block(node.name) if node.name else None,
                attrs={k: _attr_text(a) for k, a in node.attributes.items()},
                inputs=[_describe(v) for v in node.inputs],
                outputs=[_describe(v) for v in node.outputs],
                value=value,
            )
        )
        for out in node.outputs:
            self.value_source[id(out)] = node_id

    def _connect(self, node: Node) -> None:
        target = self.ids[id(node)]
        reads = [v for v in node.inputs if v is not None]
        for sub in node.subgraphs():
            reads += sub.outputs  # a body's results flow into the node that holds it
        seen = set()
        for value in reads:
            source = self.value_source.get(id(value))
            if source is None or (source, value.name) in seen or source == target:
                continue
            seen.add((source, value.name))
            self.view.edges.append((source, target, f"{value.name}: {_describe(value)[1]}"))

    def _find_blocks(self) -> None:
        sizes: dict[str, int] = {}
        for node in self.view.nodes:
            if node.block:
                sizes[node.block] = sizes.get(node.block, 0) + 1
        stems: dict[str, int] = {}
        for block in sizes:
            stems[_stem(block)] = stems.get(_stem(block), 0) + 1
        repeated = {b for b in sizes if stems[_stem(b)] > 1 and sizes[b] > 1}
        for node in self.view.nodes:
            if node.block not in repeated:
                node.block = None
        self.view.blocks = [{"id": b, "label": b.strip("/"), "size": sizes[b]} for b in sizes if b in repeated]


def build_view(
    model: Model,
    *,
    max_nodes: int | None = None,
    node_data: dict[str, float] | None = None,
    data_label: str | None = None,
) -> GraphView:
    """The view of ``model``'s main graph and its subgraphs.

    Args:
        model: the model.
        max_nodes: draw at most this many op nodes (in topological order, subgraphs inline);
            a placeholder box says how many were left out.
        node_data: a figure per node (by node name, or by the name of its first output) to colour by.
        data_label: what the figure is (shown in the legend).

    Raises:
        OnnxGraphError: ``node_data`` names no node of the model.
    """
    builder = _ViewBuilder(model, max_nodes, node_data)
    view = builder.build()
    if node_data and not builder.matched and not view.omitted:
        sample = ", ".join(list(node_data)[:3])
        raise OnnxGraphError(f"--node-data names no node of the model (e.g. {sample})")
    view.data_label = data_label if node_data else None
    return view
