"""Finding a pattern DAG in a graph, starting from the node that would match its root.

Matching walks from the root pattern node up through its inputs. A node pattern only matches a
producer in the same graph as the root (an outer-scope value can bind a variable but its producer is
never part of a match, so a rewrite inside a subgraph never touches its enclosing graph).
Commutative node patterns try both input orders, so a root yields possibly several matches, in a
fixed order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.optimizers.rewriter.editing import canonical_domain
from onnxgraph.optimizers.rewriter.pattern import (
    ConstantPattern,
    NodeOutput,
    NodePattern,
    Pattern,
    ValuePattern,
    Var,
)
from onnxgraph.optimizers.rewriter.values import const_value
from onnxgraph.value import Value


@dataclass
class Match:
    """A pattern found in a graph.

    Attributes:
        graph: the graph holding every matched node.
        root: the node matched by the pattern's root.
        nodes: matched nodes by pattern node (root first).
        bindings: pattern variables (and ``_bind`` names) to the values (nodes) they matched.
        constants: values matched by number patterns (``op.Mul(x, 1.0)``).
    """

    graph: Graph
    root: Node
    nodes: dict[int, Node] = field(default_factory=dict)
    bindings: dict[str, Value | Node | None] = field(default_factory=dict)
    constants: list[Value] = field(default_factory=list)

    def copy(self) -> Match:
        return Match(self.graph, self.root, dict(self.nodes), dict(self.bindings), list(self.constants))


def find_matches(pattern: Pattern, node: Node) -> Iterator[Match]:
    """Every way ``pattern`` matches with its root at ``node``, no intermediate value escaping."""
    assert node.graph is not None
    for match in _match_node(pattern.root, node, Match(node.graph, node)):
        if _intermediates_private(pattern, match):
            yield match


def _match_node(pn: NodePattern, node: Node, match: Match) -> Iterator[Match]:
    if node.op_type != pn.op_type or canonical_domain(node.domain) != canonical_domain(pn.domain):
        return
    if node.graph is not match.graph:
        return
    if len(node.outputs) < pn.num_outputs or not _attributes_match(pn, node):
        return
    if any(v.has_uses() or v.is_graph_output() for v in node.outputs[pn.num_outputs :]):
        return
    inputs = list(node.inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    if len(inputs) > len(pn.inputs):
        return
    inputs += [None] * (len(pn.inputs) - len(inputs))
    known = match.nodes.get(id(pn))
    if known is not None:
        if known is node:
            yield match
        return
    if any(n is node for n in match.nodes.values()):
        return
    match = match.copy()
    match.nodes[id(pn)] = node
    if pn.bind:
        match.bindings[pn.bind] = node
    orders = [inputs]
    if pn.commute and len(inputs) == 2:
        orders.append(inputs[::-1])
    for order in orders:
        yield from _match_inputs(pn.inputs, order, match)


def _match_inputs(patterns: list[ValuePattern | None], values: list[Value | None], match: Match) -> Iterator[Match]:
    if not patterns:
        yield match
        return
    for partial in _match_value(patterns[0], values[0], match):
        yield from _match_inputs(patterns[1:], values[1:], partial)


def _match_value(vp: ValuePattern | None, value: Value | None, match: Match) -> Iterator[Match]:
    if vp is None or value is None:
        if value is None and (vp is None or (isinstance(vp, Var) and vp.optional)):
            if isinstance(vp, Var) and match.bindings.get(vp.name) is not None:
                return
            match = match.copy()
            if isinstance(vp, Var):
                match.bindings[vp.name] = None
            yield match
        return
    if isinstance(vp, Var):
        bound = match.bindings.get(vp.name, value)
        if bound is value:
            if vp.name not in match.bindings:
                match = match.copy()
                match.bindings[vp.name] = value
            yield match
        return
    if isinstance(vp, ConstantPattern):
        data = const_value(value)
        if data is not None and data.size and data.dtype.kind in "iuf" and np.all(data == vp.value):
            match = match.copy()
            match.constants.append(value)
            yield match
        return
    assert isinstance(vp, NodeOutput)
    producer = value.producer()
    if producer is not None and value.index() == vp.index:
        yield from _match_node(vp.node, producer, match)


def _attributes_match(pn: NodePattern, node: Node) -> bool:
    for name, expected in pn.attributes.items():
        actual = node.attr(name)
        if isinstance(expected, list | tuple):
            if not isinstance(actual, list) or list(actual) != list(expected):
                return False
        elif actual != expected:
            return False
    return True


def _intermediates_private(pattern: Pattern, match: Match) -> bool:
    """True when the outputs of non-root matched nodes are read only inside the match."""
    matched = {id(n) for n in match.nodes.values()}
    for pn in pattern.nodes():
        if pn is pattern.root or pn.allow_other_uses:
            continue
        for value in match.nodes[id(pn)].outputs[: pn.num_outputs]:
            if value.is_graph_output() or any(id(user) not in matched for user, _ in value.uses()):
                return False
    return True
