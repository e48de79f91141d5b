"""``constants``: Constant nodes become initializers.

Rewrites:
    1. ``constant_to_initializer``: a Constant node of a graph or subgraph is replaced by an
       initializer of that graph with the same name and data (function bodies cannot hold
       initializers, so Constants stay there; sparse and attribute-reference values stay too).
"""

from __future__ import annotations

from collections import Counter

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.utils import constant_node_tensor, is_standard, scopes


class ConstantsToInitializers(Pass):
    """Turn Constant nodes into initializers outside function bodies."""

    name = "constants"
    rewrites = ("constant_to_initializer",)

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for graph, in_function in scopes(model):
            if in_function:
                continue
            for node in graph:
                if node.op_type == "Constant" and is_standard(node) and self._try_constant_to_initializer(graph, node):
                    stats["constant_to_initializer"] += 1
        return stats

    def _try_constant_to_initializer(self, graph: Graph, node: Node) -> bool:
        if not self.allows("constant_to_initializer"):
            return False
        tensor = constant_node_tensor(node)
        if tensor is None:
            return False
        # A fresh Tensor object: the attribute's tensor may be shared with other nodes' copies.
        data = tensor.copy()
        graph.replace_with_initializers(node, [data])
        return True
