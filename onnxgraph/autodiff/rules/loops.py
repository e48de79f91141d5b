"""Gradient rules of Loop and Scan.

The forward node is given one more step output per loop-carried value (its value at the start of
each step: the stash the backward pass reads). The gradient is a new Loop over the same number of
steps in reverse: each step copies the forward body, feeds it the stashed state of step ``i``, and
differentiates the copy (with the driver, as for If branches). The gradients of the carried values
travel as its own carried values; the gradients of outer-scope values the body reads are summed in
carried accumulators; Scan's per-step inputs get their gradients as step outputs, flipped back to
time order.

The reverse Loop runs as many steps as the forward one ran (the stash's length), so any trip count
and any condition work, a condition computed in the body included: the gradient is that of the steps
taken, the condition itself being a boolean that carries none. Scans with non-default axes or
directions and bodies holding subgraphs are refused with a GradientError naming the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.autodiff.rules.control import copy_nodes
from onnxgraph.autodiff.rules.recurrent import reverse_steps
from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.value import Value

_BOOL, _INT64 = onnx.TensorProto.BOOL, onnx.TensorProto.INT64


def _label(node) -> str:
    return f"{node.op_type} (node '{node.name or '<unnamed>'}')"


@register("Loop", implicit=True)
def loop(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    body = node.attr("body")
    _check_body(node, body)
    carried = [node.input(i) for i in range(2, len(node.inputs))]
    n_carried = len(carried)
    _declare_state_types(body.inputs[2:], carried)
    stash = _stash_states(b, node, body, body.inputs[2:])

    def bind(sb, i):  # the forward body's inputs at step i
        return [i, sb.const(np.array(True)), *(sb.Gather(s, i, axis=0) for s in stash)]

    # the steps the forward pass ran: however the trip count and the condition decided them
    count = b.axis_size(stash[0] if stash else node.outputs[0], 0, scalar=True)
    step_grads = [_step_slice(g) for g in grads[n_carried:]]
    types_in = [_scalar_type(_INT64), _scalar_type(_BOOL), *(v.type for v in carried)]
    d_initial, d_outer, _ = _reverse_loop(
        b, node, body, count, bind, types_in, (2, 1), list(zip(carried, grads[:n_carried])), step_grads, []
    )
    return [None, None, *d_initial, *d_outer]


@register("Scan", implicit=True)
def scan(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    body = node.attr("body")
    n_scan_in = node.attr("num_scan_inputs")
    _check_body(node, body)
    for name in ("scan_input_axes", "scan_input_directions", "scan_output_axes", "scan_output_directions"):
        if any(node.attr(name) or []):
            raise GradientError(f"the gradient of {_label(node)} with {name} other than 0 is not supported")
    n_states = len(node.inputs) - n_scan_in
    initial = [node.input(i) for i in range(n_states)]
    sequences = [node.input(i) for i in range(n_states, len(node.inputs))]
    _declare_state_types(body.inputs[:n_states], initial)
    stash = _stash_states(b, node, body, body.inputs[:n_states])
    count = b.axis_size(sequences[0], 0, scalar=True)

    def bind(sb, i):
        return [*(sb.Gather(s, i, axis=0) for s in stash), *(sb.Gather(x, i, axis=0) for x in sequences)]

    step_grads = [_step_slice(g) for g in grads[n_states:]]
    wanted_steps = [k for k, x in enumerate(sequences) if b.wants(x)]
    states = list(zip(initial, grads[:n_states]))
    types_in = [v.type for v in initial] + [_step_type(x) for x in sequences]
    d_initial, d_outer, d_steps = _reverse_loop(
        b, node, body, count, bind, types_in, (0, 0), states, step_grads, [n_states + k for k in wanted_steps]
    )
    d_sequences = [None] * n_scan_in
    for k, d in zip(wanted_steps, d_steps):
        d_sequences[k] = reverse_steps(b, d)  # the reverse loop stacked them last step first
    return [*d_initial, *d_sequences, *d_outer]


def _scalar_type(elem: int) -> onnx.TypeProto:
    return types.tensor_type(elem, ())


def _step_type(sequence: Value) -> onnx.TypeProto | None:
    """The type of one step of a sequence (its axis 0 dropped)."""
    shape = sequence.shape
    if sequence.elem_type is None:
        return None
    return types.tensor_type(sequence.elem_type, None if shape is None else tuple(shape[1:]))


def _check_body(node, body: Graph) -> None:
    if any(n.subgraphs() for n in body):
        raise GradientError(f"the gradient of {_label(node)} is not supported: its body holds subgraphs")


def _declare_state_types(states, initial) -> None:
    """Body state inputs declared without an element type get their initial value's."""
    for value, outer in zip(states, initial):
        if value.elem_type is None and outer is not None and outer.elem_type is not None:
            value.type = types.tensor_type(outer.elem_type, None)


def _stash_states(b, node, body: Graph, states) -> list[Value]:
    """Give the forward node one more step output per state input of its body: the states at the
    start of each step, stacked. Returns those new node outputs."""
    node.ensure_output(len(body.outputs) - (2 if node.op_type == "Loop" else 1))  # omitted outputs first
    fb = GradBuilder(body, b.opset, constants_as_nodes=True)
    stacked = []
    for value in states:
        step = fb.Identity(value)
        step.type = types.tensor_type(value.elem_type, None)
        body.outputs.append(step)
        out = node.ensure_output(len(node.outputs))
        out.type = types.tensor_type(value.elem_type, None)
        stacked.append(out)
    return stacked


def _step_slice(g: Value | None) -> Callable | None:
    """A function giving step ``i`` of a stacked step-output gradient inside the reverse loop."""
    if g is None:
        return None
    return lambda sb, i: sb.Gather(g, i, axis=0)


def _reverse_loop(b, node, body, count, bind, input_types, first_state, state_grads, step_grads, step_wrt):
    """Differentiate ``body`` over ``count`` steps in reverse with one new Loop.

    Args:
        b: the builder of the graph the Loop goes into.
        node: the forward Loop or Scan.
        body: its body graph.
        count: an int64 scalar, the number of steps.
        bind: ``bind(sb, i)`` gives the values of the body's inputs at step ``i``.
        input_types: the types of those values (from the node's inputs: a carried value keeps its
            shape from step to step, as stacking its stash requires).
        first_state: the positions of the first state input and the first state output of the body.
        state_grads: per state, (its initial value, the upstream gradient of its final value or None).
        step_grads: per step output of the body, a function ``(sb, i) -> its upstream gradient at
            step i`` (None: zero).
        step_wrt: body input positions whose per-step gradients become step outputs (Scan's
            sequences).

    Returns:
        (gradients of the initial states, of the node's implicit inputs in order, stacked per-step
        gradients for ``step_wrt`` in reverse step order).
    """
    state_in, state_out = first_state
    states = body.inputs[state_in : state_in + len(state_grads)]
    floats = [k for k, v in enumerate(states) if v.elem_type in types.FLOAT_TYPES]
    outer = node.implicit_inputs()
    wanted_outer = [v for v in outer if b.wants(v) and v.elem_type in types.FLOAT_TYPES]
    initial = [state_grads[k][1] if state_grads[k][1] is not None else b.zeros_like(state_grads[k][0]) for k in floats]
    initial += [b.zeros_like(v) for v in wanted_outer]
    grad_body = Graph(f"{body.name or 'body'}_grad")
    results = b.Loop(count, None, *initial, body=grad_body, _outputs=len(initial) + len(step_wrt))
    results = results if isinstance(results, tuple) else (results,)
    # built once the Loop is in the graph, so names stay unique across scopes
    sb = GradBuilder(grad_body, b.opset, constants_as_nodes=True)
    j = grad_body.add_input(Value(grad_body.fresh_name("step"), types.tensor_type(_INT64, ())))
    cond = grad_body.add_input(Value(grad_body.fresh_name("cond"), types.tensor_type(_BOOL, ())))
    carried = [
        grad_body.add_input(Value(grad_body.fresh_name("carried"), types.tensor_type(v.elem_type, None)))
        for v in initial
    ]
    i = sb.Sub(sb.Sub(count, sb.const(np.int64(1))), j)
    mapping = dict(zip(body.inputs, bind(sb, i)))
    known = _body_types(b, node, body, input_types)
    for value, bound in mapping.items():
        bound.type = known.get(value.name, bound.type)
    copies = copy_nodes(body, grad_body, mapping)
    for old, new in copies.items():
        if old.name in known and new.shape is None:
            new.type = known[old.name]
    seeds: dict[Value, Value] = {}
    for k, upstream in zip(floats, carried):
        _add_seed(sb, seeds, copies.get(body.outputs[state_out + k], body.outputs[state_out + k]), upstream)
    first_step = state_out + len(states)
    for k, make in enumerate(step_grads):
        if make is not None:
            out = body.outputs[first_step + k]
            _add_seed(sb, seeds, copies.get(out, out), make(sb, i))
    wrt = [mapping[states[k]] for k in floats] + wanted_outer + [mapping[body.inputs[p]] for p in step_wrt]
    from onnxgraph.autodiff.engine import backpropagate

    found = backpropagate(grad_body, sb, seeds, wrt)
    outputs = [sb.Identity(cond)]
    outputs += [_or_zeros(sb, found[mapping[states[k]]], mapping[states[k]]) for k in floats]
    outputs += [_accumulate(sb, acc, found[v]) for acc, v in zip(carried[len(floats) :], wanted_outer)]
    outputs += [_or_zeros(sb, found[mapping[body.inputs[p]]], mapping[body.inputs[p]]) for p in step_wrt]
    for value, like in zip(outputs, [cond, *carried, *[mapping[body.inputs[p]] for p in step_wrt]]):
        value.type = types.tensor_type(like.elem_type, None)
        grad_body.outputs.append(value)
    for value, like in zip(results, initial + [mapping[body.inputs[p]] for p in step_wrt]):
        value.type = types.tensor_type(like.elem_type, None)
    d_states = [None] * len(states)
    for k, value in zip(floats, results):
        d_states[k] = value
    by_outer = dict(zip(wanted_outer, results[len(floats) : len(initial)]))
    return d_states, [by_outer.get(v) for v in outer], list(results[len(initial) :])


def _add_seed(sb, seeds, value, upstream) -> None:
    seeds[value] = sb.Add(seeds[value], upstream) if value in seeds else upstream


def _or_zeros(sb, gradient, like):
    return sb.Identity(gradient if gradient is not None else sb.zeros_like(like))


def _accumulate(sb, acc, gradient):
    return sb.Add(acc, gradient) if gradient is not None else sb.Identity(acc)


def _body_types(b, node, body: Graph, input_types) -> dict[str, onnx.TypeProto]:
    """The types onnx shape inference gives the body's values when its inputs have
    ``input_types`` (a body usually declares its inputs without shapes, so inference on the
    model leaves them unknown, and the rules need ranks)."""
    from onnxgraph.serde.exporter import export_node

    inputs = [
        onnx.helper.make_value_info(v.name, t) if t is not None and v.name else onnx.ValueInfoProto(name=v.name)
        for v, t in zip(body.inputs, input_types)
    ]
    inputs += [onnx.helper.make_value_info(v.name, v.type) for v in node.implicit_inputs() if v.type is not None]
    graph = onnx.helper.make_graph(
        [export_node(n) for n in body], "body", inputs, [onnx.ValueInfoProto(name=v.name) for v in body.outputs]
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", b.opset)])
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - types stay as they are; a rule needing one says so
        return {}
    found = {v.name: t for v, t in zip(body.inputs, input_types) if t is not None and v.name}
    found.update((info.name, info.type) for info in inferred.graph.value_info)
    return found
