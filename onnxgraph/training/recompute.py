"""Activation recomputation: the backward pass recomputes forward activations instead of keeping them.

After the train step is built, each backward node that reads a forward activation chosen for
recomputation reads a clone instead: the forward nodes from the nearest kept values (checkpoints,
inputs, parameters) up to the activation, inserted just before the first backward node that needs
them. The forward originals are then freed once the forward pass has used them, and onnxruntime
keeps only the checkpoints across the whole step.

Each kept activation a clone reads goes through ``kept + 0 * g[0]``, with ``g`` a gradient the
backward node at hand reads: the data dependency makes any runtime schedule the clones when the
backward pass gets there (not right after the forward pass), and keeps common-subexpression
elimination (onnxruntime's included) from merging the clones back into the originals.

``"auto"`` keeps the inputs of the normalization nodes (LayerNormalization, RMSNormalization,
BatchNormalization, SimplifiedLayerNormalization): in a transformer the residual stream at each block
boundary, in a CNN each stage's input, and recomputes everything between them. An explicit list
recomputes just the named values (each from its producer's stored inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from onnxgraph import types
from onnxgraph.builder import OpBuilder
from onnxgraph.errors import TrainingError
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.value import Value

BOUNDARY_OPS = frozenset(
    {"LayerNormalization", "RMSNormalization", "BatchNormalization", "SimplifiedLayerNormalization"}
)
"""Ops whose first input ``recompute="auto"`` keeps (a block boundary)."""


def recompute(model: Model, roots: Sequence[str], choice: str | Sequence[str]) -> int:
    """Rewrite the train step so the backward pass recomputes activations; return the clones made.

    Args:
        model: the built train step (cleanup already done: a later CSE would merge the clones back).
        roots: outputs that only the forward pass computes (the loss, the model outputs).
        choice: ``"auto"`` or the names of the forward values to recompute.

    Raises:
        TrainingError: a named value is not a forward activation.
    """
    graph = model.graph
    forward = _ancestors(graph, roots)
    if choice == "auto":
        kept = {n.inputs[0] for n in forward if n.op_type in BOUNDARY_OPS and n.inputs and n.inputs[0] is not None}
        wanted: Callable[[Value], bool] = lambda v: v not in kept  # noqa: E731
    else:
        produced = {v.name: v for n in forward for v in n.outputs if v.name}
        unknown = [name for name in choice if name not in produced]
        if unknown:
            raise TrainingError(f"recompute: {', '.join(unknown)} is not an activation of the forward pass")
        chosen = {produced[name] for name in choice}
        wanted = chosen.__contains__
    clones: dict[Value, Value] = {}
    made = 0
    for node in graph.nodes:
        if node in forward:
            continue
        for i, value in enumerate(node.inputs):
            if value is None or not _recomputable(value, forward, wanted):
                continue
            before = len(clones)
            gate = _Gate(graph, node, forward)
            node.replace_input_with(i, _clone(graph, value, node, forward, wanted, clones, gate))
            made += len(clones) - before
    return made


class _Gate:
    """``kept + 0 * g[0]`` for the kept activations a clone reads (see the module docstring)."""

    def __init__(self, graph: Graph, anchor: Node, forward: set[Node]):
        self.graph, self.anchor = graph, anchor
        self.gradient = _independent_gradient(anchor, forward)
        self.zero: Value | None = None

    def __call__(self, kept: Value, forward: set[Node]) -> Value:
        producer = kept.producer()
        if (
            self.gradient is None
            or producer is None
            or producer not in forward
            or kept.elem_type not in types.FLOAT_TYPES
        ):
            return kept
        b = OpBuilder(self.graph, insert_before=self.anchor)
        if self.zero is None:
            first = b.Gather(b.Reshape(self.gradient, b.const(np.array([-1], np.int64))), b.const(np.int64(0)))
            self.zero = b.Mul(first, b.CastLike(b.const(np.float32(0)), first))
        gated = b.Add(kept, b.CastLike(self.zero, kept))
        gated.type = kept.type
        return gated


def _independent_gradient(anchor: Node, forward: set[Node]) -> Value | None:
    """A backward value read by ``anchor`` or by the first nodes after it that does not depend on
    ``anchor``: the latest point before ``anchor``'s result is needed, as a data dependency."""
    order: list[Node] = [anchor]
    downstream = {anchor}
    for node in order:
        for out in node.outputs:
            for user in out.consumers():
                if user not in downstream:
                    downstream.add(user)
                    order.append(user)
    for node in order:
        for x in node.inputs:
            producer = None if x is None else x.producer()
            if x is not None and producer is not None and producer not in forward and producer not in downstream:
                if x.elem_type in (None, *types.FLOAT_TYPES):
                    return x
    return None


def _ancestors(graph: Graph, roots: Sequence[str]) -> set[Node]:
    by_name = {v.name: v for v in graph.outputs}
    stack = [by_name[r] for r in roots if r in by_name]
    seen: set[Node] = set()
    while stack:
        node = stack.pop().producer()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(x for x in (*node.inputs, *node.implicit_inputs()) if x is not None)
    return seen


def _recomputable(value: Value, forward: set[Node], wanted: Callable[[Value], bool]) -> bool:
    return _recomputed_producer(value, forward, wanted) is not None


def _recomputed_producer(value: Value, forward: set[Node], wanted: Callable[[Value], bool]) -> Node | None:
    """The node to clone to recompute ``value``, None when ``value`` is kept instead."""
    producer = value.producer()
    if (
        producer is not None
        and producer in forward
        and producer.op_type != "Constant"
        and not producer.subgraphs()
        and wanted(value)
    ):
        return producer
    return None


def _clone(
    graph: Graph,
    value: Value,
    anchor: Node,
    forward: set[Node],
    wanted: Callable[[Value], bool],
    clones: dict[Value, Value],
    gate: _Gate,
) -> Value:
    """``value`` recomputed before ``anchor`` (its producers cloned back to kept values), memoized."""
    if value in clones:
        return clones[value]
    node = _recomputed_producer(value, forward, wanted)
    if node is None:
        clones[value] = gate(value, forward)
        return clones[value]
    inputs = [None if x is None else _clone(graph, x, anchor, forward, wanted, clones, gate) for x in node.inputs]
    copy = node.copy(inputs, name=f"{node.name}_recompute" if node.name else "")
    graph.insert_before(anchor, copy)
    for old, new in zip(node.outputs, copy.outputs):
        if old.name:
            clones[old] = new
    return clones[value]
