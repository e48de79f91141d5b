"""Activation recomputation: the backward pass recomputes forward activations instead of keeping them.

After the train step is built, each backward node that reads a forward activation chosen for
recomputation reads a clone instead: the forward nodes from the nearest kept values (checkpoints,
inputs, parameters) up to the activation, inserted just before the first backward node that needs
them. The forward originals are then freed once the forward pass has used them, and onnxruntime
keeps only the checkpoints across the whole step.

``"auto"`` keeps the inputs of the normalization nodes (LayerNormalization, RMSNormalization,
BatchNormalization, SimplifiedLayerNormalization): in a transformer the residual stream at each block
boundary, in a CNN each stage's input, and recomputes everything between them. An explicit list
recomputes just the named values (each from its producer's stored inputs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.training.errors import TrainingError
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
            node.replace_input_with(i, _clone(graph, value, node, forward, wanted, clones))
            made += len(clones) - before
    return made


def _ancestors(graph: Graph, roots: Sequence[str]) -> set[Node]:
    by_name = {v.name: v for v in graph.outputs}
    stack = [by_name[r].producer() for r in roots if r in by_name and by_name[r].producer() is not None]
    seen: set[Node] = set()
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        stack.extend(x.producer() for x in (*node.inputs, *node.implicit_inputs()) if x is not None and x.producer())
    return seen


def _recomputable(value: Value, forward: set[Node], wanted: Callable[[Value], bool]) -> bool:
    producer = value.producer()
    return (
        producer is not None
        and producer in forward
        and producer.op_type != "Constant"
        and not producer.subgraphs()
        and wanted(value)
    )


def _clone(graph: Graph, value: Value, anchor: Node, forward: set[Node], wanted, clones: dict[Value, Value]) -> Value:
    """``value`` recomputed before ``anchor`` (its producers cloned back to kept values), memoized."""
    if value in clones:
        return clones[value]
    if not _recomputable(value, forward, wanted):
        return value
    node = value.producer()
    inputs = [None if x is None else _clone(graph, x, anchor, forward, wanted, clones) for x in node.inputs]
    copy = Node(
        node.domain,
        node.op_type,
        inputs,
        list(node.attributes.values()),
        num_outputs=len(node.outputs),
        name=f"{node.name}_recompute" if node.name else "",
    )
    graph.insert_before(anchor, copy)
    for old, new in zip(node.outputs, copy.outputs):
        if old.name:
            new.type = old.type
            clones[old] = new
        else:
            new.name = ""
    return clones[value]
