"""The reverse-mode driver: walks the nodes between ``wrt`` and the seeds and applies the rules.

The generic work lives here once: restricting to nodes on a path from a ``wrt`` value to a seeded
value, the reverse topological walk, fan-in summation, un-broadcasting (through
:meth:`GradBuilder.unbroadcast`) and the error for a missing rule. Gradient nodes are appended after
the forward nodes and read the forward activations directly, so nothing is recomputed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import ALL, GradRule, lookup
from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.value import Value


def backpropagate(
    graph: Graph, builder: GradBuilder, seeds: Mapping[Value, Value], wrt: Iterable[Value]
) -> dict[Value, Value | None]:
    """Append the backward pass to ``graph``.

    Args:
        graph: the forward graph (value types from shape inference make shapes static where known).
        builder: appends the gradient nodes.
        seeds: value -> its upstream gradient (the seed: ones for a loss, an input for a VJP).
        wrt: values to differentiate with respect to.

    Returns:
        wrt value -> its gradient (None where no path links it to a seed).

    Raises:
        GradientError: a node on a path from ``wrt`` to a seed has no gradient rule.
    """
    wrt = list(wrt)
    order = graph.topological_order()
    reached = _forward_reach(order, wrt)
    needed = _backward_reach(order, seeds)
    grads: dict[Value, list[Value]] = {v: [g] for v, g in seeds.items()}
    builder.reached = reached
    leaves = set(wrt)
    for node in reversed(order):
        if not any(o in needed for o in node.outputs) or not _reads_reached(node, reached):
            continue
        try:
            _differentiate(builder, node, grads, reached, leaves)
        except GradientError as exc:
            path = " -> ".join(_path_through(node, leaves, reached, needed, set(seeds)))
            raise GradientError(f"{exc} (node '{node.name or '<unnamed>'}') on the path {path}") from exc
    return {w: _total(builder, grads, w) for w in wrt}


def _differentiate(
    builder: GradBuilder,
    node: Node,
    grads: dict[Value, list[Value]],
    reached: set[Value],
    leaves: set[Value],
) -> None:
    """Apply ``node``'s rule; a refusal raises GradientError (the caller adds the node and path).

    The gradient of a ``wrt`` value computed inside the graph (an Identity of an initializer, any
    intermediate) is its own: it does not flow on into whatever produced the value."""
    rule = lookup(node.domain, node.op_type)
    op = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
    if rule is None:
        raise GradientError(f"no gradient rule for op '{op}'")
    out_grads = [None if o in leaves else _total(builder, grads, o) for o in node.outputs]
    for k, g in enumerate(out_grads):
        if g is not None and rule.outputs != ALL and k not in rule.outputs:
            raise GradientError(
                f"the gradient through output {k} ('{node.outputs[k].name}') of {node.op_type} is not supported"
            )
    if rule.fn is None or all(g is None for g in out_grads):
        return
    _refuse_constant_inputs_on_path(node, rule, reached)
    _apply(builder, rule, node, out_grads, reached, grads)


def _total(builder: GradBuilder, grads: dict[Value, list[Value]], value: Value) -> Value | None:
    """The summed gradient of ``value`` (fan-in), None when nothing flows into it."""
    total = builder.add_all(grads.get(value, []))
    return None if total is None else builder.typed(total, value)


def _apply(
    builder: GradBuilder,
    rule: GradRule,
    node: Node,
    out_grads: list[Value | None],
    reached: set[Value],
    grads: dict[Value, list[Value]],
) -> None:
    """Run ``node``'s rule and record each input's gradient (un-broadcast where the rule says)."""
    assert rule.fn is not None, "stop rules (no fn) are filtered out before _apply"
    in_grads = rule.fn(builder, node, out_grads)
    targets = list(node.inputs) + (node.implicit_inputs() if rule.implicit else [])
    for i, (x, g) in enumerate(zip(targets, in_grads)):
        explicit = i < len(node.inputs)
        if g is None or x is None or x not in reached or (explicit and not rule.is_differentiable(i)):
            continue
        if explicit and rule.broadcasts(i):
            g = builder.unbroadcast(g, x, node.outputs[0].shape)
        grads.setdefault(x, []).append(builder.typed(g, x))  # later rules read its element type


def _refuse_constant_inputs_on_path(node: Node, rule: GradRule, reached: set[Value]) -> None:
    """A float input the rule treats as a constant (class weights, Dropout's ratio, Resize's scales)
    must not depend on a wrt value: its gradient would silently come out as zero."""
    for i, x in enumerate(node.inputs):
        if x is not None and x in reached and not rule.is_differentiable(i):
            raise GradientError(
                f"the gradient with respect to input {i} ('{x.name}') of {node.op_type} "
                "is not supported: the rule treats it as a constant"
            )


def is_float(value: Value) -> bool:
    """True unless the value's type is known and is not a floating-point tensor."""
    elem = value.elem_type
    if elem is None:
        return value.type is None or value.type.WhichOneof("value") is None
    return elem in types.FLOAT_TYPES


def _differentiable_inputs(node: Node) -> list[Value]:
    rule = lookup(node.domain, node.op_type)
    found = []
    for i, x in enumerate(node.inputs):
        if x is None or not is_float(x):
            continue
        if rule is None or (rule.fn is not None and rule.is_differentiable(i)):
            found.append(x)
    if (rule is None or rule.implicit) and node.attributes:  # reads inside subgraphs count too
        found += [v for v in node.implicit_inputs() if is_float(v)]
    return found


def _reads_reached(node: Node, reached: set[Value]) -> bool:
    return any(x in reached for x in _differentiable_inputs(node))


def _forward_reach(order: list[Node], wrt: list[Value]) -> set[Value]:
    reached = set(wrt)
    for node in order:
        if _reads_reached(node, reached):
            reached.update(o for o in node.outputs if o.name and is_float(o))
    return reached


def _backward_reach(order: list[Node], seeds: Mapping[Value, Value]) -> set[Value]:
    needed = set(seeds)
    for node in reversed(order):
        if any(o in needed for o in node.outputs):
            needed.update(_differentiable_inputs(node))
    return needed


def _path_through(node: Node, wrt: set[Value], reached: set[Value], needed: set[Value], seeds: set[Value]) -> list[str]:
    """Names along one path wrt -> ... -> node -> ... -> seed, for the error message."""

    def label(n: Node) -> str:
        return f"{n.op_type}({n.name})" if n.name else n.op_type

    back: list[str] = []
    current = node
    while True:
        x = next(x for x in _differentiable_inputs(current) if x in reached)
        producer = x.producer()
        if x in wrt or producer is None:
            back.append(_name(x))
            break
        current = producer
        back.append(label(current))
    forward: list[str] = []
    value = next(o for o in node.outputs if o in needed)
    while value not in seeds:
        consumer = next(n for n in value.consumers() if any(o in needed for o in n.outputs))
        forward.append(label(consumer))
        value = next(o for o in consumer.outputs if o in needed)
    forward.append(_name(value))
    return [*reversed(back), label(node), *forward]


def _name(value: Value) -> str:
    return value.name if value.name is not None else "<unnamed>"
