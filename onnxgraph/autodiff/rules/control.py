"""Gradient rule of If: a new If on the same condition whose branches differentiate the forward
branches. A branch's inner values are not visible outside it, so each gradient branch recomputes its
forward branch (a copy of its nodes) before the backward nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.value import Value

BRANCHES = ("then_branch", "else_branch")


@register("If", differentiable=(), implicit=True)
def if_(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    outer = node.implicit_inputs()
    wanted = [v for v in outer if b.wants(v)]
    if not wanted:
        return []
    branches: dict[str, Any] = {name: Graph(f"{node.attr(name).name or name}_grad") for name in BRANCHES}
    results = b.If(node.input(0), _outputs=len(wanted), **branches)
    for name, graph in branches.items():  # built once the If is in the graph, so names stay unique
        _differentiate_branch(b, node.attr(name), graph, grads, wanted)
    by_value = dict(zip(wanted, results))
    return [None, *[by_value.get(v) for v in outer]]


def _differentiate_branch(b, branch: Graph, target: Graph, grads, wanted) -> None:
    from onnxgraph.autodiff.engine import backpropagate

    if any(node.subgraphs() for node in branch):
        raise GradientError("the gradient of If with nested subgraphs is not supported")
    copies = copy_nodes(branch, target)
    seeds = {}
    for out, g in zip(branch.outputs, grads):
        if g is not None:
            seeds[copies.get(out, out)] = g
    sub = GradBuilder(target, b.opset, constants_as_nodes=True)
    found = backpropagate(target, sub, seeds, wanted)
    for value in wanted:
        gradient = found[value] if found[value] is not None else sub.zeros_like(value)
        exposed = sub.Identity(gradient)
        exposed.type = types.tensor_type(value.elem_type, value.shape)
        target.outputs.append(exposed)


def copy_nodes(body: Graph, target: Graph, mapping: dict[Value, Value] | None = None) -> dict[Value, Value]:
    """Append copies of ``body``'s nodes to ``target``, reading ``mapping``'s values in place of its keys
    (a Loop body's inputs); return every body value -> its copy (outer-scope values are read as they are)."""
    copies: dict[Value, Value] = dict(mapping or {})
    for node in body:
        clone = node.copy([None if v is None else copies.get(v, v) for v in node.inputs])
        for old, new in zip(node.outputs, clone.outputs):
            copies[old] = new
        target.append(clone)
    return copies
