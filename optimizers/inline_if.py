"""``inline-if``: an If whose condition is a constant is replaced by the branch it takes.

Rewrites:
    1. ``inline_branch``: the taken branch's nodes and initializers move into the enclosing graph
       just before the If, and the If's readers read the branch's results. Where an If output is
       a graph output that the branch does not compute itself (an outer value), an Identity
       keeps the output's name and declared type; a result the branch computes takes over the
       output's name and declared type itself.
"""

from __future__ import annotations

from collections import Counter

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.base import Pass
from onnxgraph.optimizers.utils import constant_array, is_standard, scopes


class InlineConstantIf(Pass):
    """Inline If nodes with a constant condition."""

    name = "inline-if"
    rewrites = ("inline_branch",)

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for graph, in_function in scopes(model):
            for node in graph:
                if node.op_type == "If" and is_standard(node) and self._try_inline_branch(node, in_function):
                    stats["inline_branch"] += 1
        return stats

    def _try_inline_branch(self, node: Node, in_function: bool) -> bool:
        if not self.allows("inline_branch") or node.graph is None:
            return False
        cond = constant_array(node.inputs[0])
        if cond is None or cond.size != 1:
            return False
        branch: Graph | None = node.attr("then_branch" if bool(cond.reshape(())) else "else_branch")
        if branch is None or len(branch.outputs) != len(node.outputs):
            return False
        if in_function and branch.initializers:
            return False
        graph = node.graph
        moved = branch.nodes
        for inner in moved:
            inputs = inner.inputs
            branch.remove(inner, safe=False)
            graph.insert_before(node, inner)
            inner.set_inputs(inputs)
        for name in list(branch.initializers):
            graph.add_initializer(branch.initializers.pop(name))
        results = list(branch.outputs)
        branch.outputs.clear()
        graph_outputs = {id(v) for v in graph.outputs}
        own = {id(v) for n in moved for v in n.outputs}
        for out, result in zip(node.outputs, results):
            # A graph output needs a value of its own: an Identity unless the branch computed it.
            if id(out) in graph_outputs and (
                id(result) not in own or results.count(result) > 1 or id(result) in graph_outputs
            ):
                identity = Node("", "Identity", [result])
                graph.insert_before(node, identity)
                identity.outputs[0].type = out.type
                result = identity.outputs[0]
            declared, was_output = out.type, id(out) in graph_outputs
            out.replace_all_uses_with(result, replace_graph_outputs=True)
            if was_output and declared is not None:
                result.type = declared  # the interface keeps its declared type, not the branch's
        for untaken in node.subgraphs():
            for inner in untaken.all_nodes():
                inner.detach_inputs()
        graph.remove(node)
        return True
