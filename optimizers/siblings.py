"""``siblings``: MatMuls that read one input with constant weights become one MatMul and a Split.

Rewrites:
    1. ``matmul_siblings``: two or more MatMuls of one graph reading the same value ``x`` as their
       first input, each with its own 2-D constant weight ``[K, N_i]`` of one
       element type, become ``MatMul(x, [W_1 | W_2 | ...])`` and a Split of the last axis into the
       ``N_i`` (attention's separate Q, K and V projections; a gated MLP's gate and up projections).
       When every one of them is read only by an Add of its own 1-D constant bias ``[N_i]``, the
       biases are merged too and the one Add comes before the Split.

Not in the default pipeline (ask for it with ``--passes``): measured on onnxruntime CPU with BERT and
ViT exports, the merged model ran no faster, and in two of five runs slower (docs/benchmarks.md,
"Node counts").
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.rewriter.editing import Scope, scopes
from onnxgraph.optimizers.utils import constant_array, is_standard, new_constant, remove_if_unused
from onnxgraph.value import Value

_SPLIT_SIZES_AS_INPUT = 13
"""Opset from which Split takes its sizes as an input instead of an attribute."""


class SiblingMerge(Pass):
    __doc__ = __doc__
    name = "siblings"
    rewrites = ("matmul_siblings",)

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        if not self.allows("matmul_siblings"):
            return stats
        for scope in scopes(model):
            for x in _read_values(scope.graph):
                if self._try_matmul_siblings(scope, x):
                    stats["matmul_siblings"] += 1
        return stats

    def _try_matmul_siblings(self, scope: Scope, x: Value) -> bool:
        graph = scope.graph
        siblings = [
            (node, weight)
            for node, index in x.uses()
            if index == 0 and node.graph is graph and (weight := _private_weight(node)) is not None
        ]
        if len(siblings) < 2:
            return False
        dtype = siblings[0][1].dtype
        if any(w.dtype != dtype or w.shape[0] != siblings[0][1].shape[0] for _, w in siblings):
            return False
        biases = [_private_bias(node, w) for node, w in siblings]
        with_bias = all(b is not None for b in biases)
        first = min((node for node, _ in siblings), key=_position(graph))
        weight = new_constant(
            graph,
            np.concatenate([w for _, w in siblings], axis=1),
            in_function=scope.in_function,
            before=first,
            base_name="merged_weight",
        )
        merged = _insert(graph, first, Node("", "MatMul", [x, weight]))
        adds = [b[0] for b in biases if b is not None]
        if with_bias:
            data = np.concatenate([b[1] for b in biases if b is not None])
            bias = new_constant(graph, data, in_function=scope.in_function, before=first, base_name="merged_bias")
            merged = _insert(graph, first, Node("", "Add", [merged, bias]))
        sizes = [int(w.shape[1]) for _, w in siblings]
        split = self._split(scope, first, merged, sizes)
        replaced = adds if with_bias else [node for node, _ in siblings]
        for old, new in zip(replaced, split.outputs, strict=True):
            new.type = old.outputs[0].type
            old.outputs[0].replace_all_uses_with(new, replace_graph_outputs=True)
        for old in replaced:
            remove_if_unused(old)
        for node, _ in siblings:
            remove_if_unused(node)
        return True

    @staticmethod
    def _split(scope: Scope, anchor: Node, value: Value, sizes: list[int]) -> Node:
        if scope.opset >= _SPLIT_SIZES_AS_INPUT:
            sizes_value = new_constant(
                scope.graph, np.array(sizes, np.int64), in_function=scope.in_function, before=anchor, base_name="split"
            )
            node = Node("", "Split", [value, sizes_value], {"axis": -1}, num_outputs=len(sizes))
        else:
            node = Node("", "Split", [value], {"axis": -1, "split": sizes}, num_outputs=len(sizes))
        scope.graph.insert_before(anchor, node)
        return node


def _read_values(graph: Graph) -> list[Value]:
    """Values that two or more MatMuls of ``graph`` read as their first input, in graph order."""
    counts: Counter[int] = Counter()
    values: dict[int, Value] = {}
    for node in graph:
        if node.op_type == "MatMul" and is_standard(node) and node.inputs and node.inputs[0] is not None:
            counts[id(node.inputs[0])] += 1
            values[id(node.inputs[0])] = node.inputs[0]
    return [values[key] for key, count in counts.items() if count > 1]


def _private_weight(node: Node) -> np.ndarray | None:
    """A MatMul's 2-D constant weight that nothing else reads, or None."""
    if node.op_type != "MatMul" or not is_standard(node) or len(node.inputs) != 2:
        return None
    w = node.inputs[1]
    data = constant_array(w)
    if w is None or data is None or data.ndim != 2 or data.dtype.kind != "f" or len(w.uses()) != 1:
        return None
    return data if not w.is_graph_output() and not node.outputs[0].is_graph_output() else None


def _private_bias(matmul: Node, weight: np.ndarray) -> tuple[Node, np.ndarray] | None:
    """The Add of a 1-D constant bias (the weight's columns and type) that is the MatMul's only reader,
    with the bias; None when there is none."""
    uses = matmul.outputs[0].uses()
    if len(uses) != 1 or matmul.outputs[0].is_graph_output():
        return None
    add, slot = uses[0]
    if add.op_type != "Add" or not is_standard(add) or len(add.inputs) != 2 or add.graph is not matmul.graph:
        return None
    b = add.inputs[1 - slot]
    data = constant_array(b)
    if b is None or data is None or data.shape != weight.shape[1:] or data.dtype != weight.dtype:
        return None
    return (add, data) if len(b.uses()) == 1 and not b.is_graph_output() else None


def _position(graph: Graph):
    order = {id(node): i for i, node in enumerate(graph)}
    return lambda node: order[id(node)]


def _insert(graph: Graph, anchor: Node, node: Node) -> Value:
    graph.insert_before(anchor, node)
    return node.outputs[0]


PASS = SiblingMerge
