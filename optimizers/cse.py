"""``cse``: common subexpression elimination.

Rewrites:
    1. ``initializer``: initializers of one graph with the same type, shape and content (found by
       a content hash, confirmed byte for byte) are merged into the first one.
    2. ``node``: a node that repeats an earlier node of the same graph (same op, attributes,
       constant contents and inputs) is dropped and its readers read the earlier node's outputs.
       Constant nodes with equal data merge this way too. Random ops, training Dropout and nodes
       with subgraphs are never merged.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable

import onnx

from onnxgraph.attribute import Attribute, AttrType
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.utils import is_deterministic, scopes
from onnxgraph.tensor import Tensor
from onnxgraph.value import Value

_HASHED_PREFIX = 1 << 16
"""Bytes of a tensor hashed for bucketing; equal buckets are confirmed by a full comparison."""


class CommonSubexpressionElimination(Pass):
    """Merge duplicate initializers and nodes."""

    name = "cse"
    rewrites = ("initializer", "node")

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for graph, _ in scopes(model):
            stats["initializer"] += self._merge_initializers(graph)
            seen: dict[Hashable, Node] = {}
            for node in graph:
                if self._try_node(graph, node, seen):
                    stats["node"] += 1
        return stats

    def _merge_initializers(self, graph: Graph) -> int:
        if not self.allows("initializer"):
            return 0
        buckets: dict[Hashable, list[tuple[str, Value, Tensor]]] = {}
        for name, value in graph.initializers.items():
            if isinstance(value.const_value, Tensor) and not value.is_graph_input():
                buckets.setdefault(tensor_key(value.const_value), []).append((name, value, value.const_value))
        merged = 0
        for entries in buckets.values():
            kept: list[tuple[Value, Tensor]] = []
            for name, value, data in entries:
                twin = next((k for k, k_data in kept if k_data.same_contents(data)), None)
                if twin is None or value.is_graph_output():
                    kept.append((value, data))
                    continue
                value.replace_all_uses_with(twin)
                graph.remove_initializer(name)
                merged += 1
        return merged

    def _try_node(self, graph: Graph, node: Node, seen: dict[Hashable, Node]) -> bool:
        if not self.allows("node") or node.subgraphs() or not is_deterministic(node):
            return False
        key = node_key(node)
        if key is None:
            return False
        twin = seen.setdefault(key, node)
        if twin is node or any(v.is_graph_output() for v in node.outputs):
            return False
        for old, new in zip(node.outputs, twin.outputs):
            old.replace_all_uses_with(new)
        graph.remove(node)
        return True


def tensor_key(tensor: Tensor) -> Hashable:
    """A cheap key that equal tensors share: type, shape and a hash of the leading bytes."""
    if tensor.elem_type == onnx.TensorProto.STRING:  # strings have no raw bytes
        digest = hashlib.sha1(repr(tensor.numpy().tolist()).encode()).hexdigest()
    else:
        digest = hashlib.sha1(memoryview(tensor.raw_bytes()).cast("B")[:_HASHED_PREFIX]).hexdigest()
    return (tensor.elem_type, tensor.dims, digest)


def _content(tensor: Tensor) -> Hashable:
    if tensor.elem_type == onnx.TensorProto.STRING:
        return repr(tensor.numpy().tolist())
    return bytes(tensor.raw_bytes())


def _attribute_key(attr: Attribute) -> Hashable | None:
    if attr.ref_attr_name:
        return (attr.name, "ref", attr.ref_attr_name)
    value = attr.value
    if attr.type == AttrType.TENSOR:
        return (attr.name, tensor_key(value), _content(value))
    if attr.type == AttrType.TENSORS:
        return (attr.name, tuple((tensor_key(t), _content(t)) for t in value))
    if attr.type in (AttrType.GRAPH, AttrType.GRAPHS, AttrType.SPARSE_TENSOR, AttrType.SPARSE_TENSORS):
        return None
    if attr.type == AttrType.TYPE_PROTO:
        return (attr.name, value.SerializeToString())
    if attr.type == AttrType.TYPE_PROTOS:
        return (attr.name, tuple(t.SerializeToString() for t in value))
    if isinstance(value, list):
        return (attr.name, attr.type, tuple(value))
    return (attr.name, attr.type, value)


def node_key(node: Node) -> Hashable | None:
    """What makes two nodes compute the same thing, or None when they cannot be compared."""
    attrs = []
    for name in sorted(node.attributes):
        key = _attribute_key(node.attributes[name])
        if key is None:
            return None
        attrs.append(key)
    inputs = tuple(None if v is None else id(v) for v in node.inputs)
    return (node.domain, node.op_type, node.overload, len(node.outputs), inputs, tuple(attrs))
