"""Gradient rules of LSTM and GRU: backpropagation through time with standard ops.

The forward node's ``Y`` output holds every hidden state, so the inputs of each step
(``h_{t-1}``) are known at once and all gate pre-activations are recomputed with one batched MatMul
over the whole sequence. Only the true recurrences run step by step, each in a ``Scan``: LSTM's cell
state (a forward Scan of ``c = f*c + i*g``) and the gradient flowing back through ``R`` (a reverse
Scan emitting each step's gate gradients). The weight, bias and input gradients are then batched
MatMuls and sums over all steps again. A Scan keeps the gradient graph the same size for any
sequence length (also a dynamic one), at the cost of running the small per-step MatMul one step at
a time, as the forward kernel does; unrolling would grow the graph with the sequence.

A reverse direction is handled as a forward one on time-flipped sequences; bidirectional runs both.
Refused with a GradientError naming the node: ``sequence_lens``, peepholes, non-default activations,
``clip`` and LSTM's ``input_forget``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from onnxgraph import types
from onnxgraph.autodiff.builder import GradBuilder
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.autodiff.registry import register
from onnxgraph.graph import Graph
from onnxgraph.node import Node
from onnxgraph.value import Value

_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_FIRST = [0]
_INT64_MIN = np.iinfo(np.int64).min


@register("LSTM", differentiable=(0, 1, 2, 3, 5, 6))
def lstm(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return _recurrent(b, node, grads, _lstm_direction)


@register("GRU", differentiable=(0, 1, 2, 3, 5))
def gru(b: GradBuilder, node: Node, grads: Sequence[Value | None]) -> Sequence[Value | None]:
    return _recurrent(b, node, grads, _gru_direction)


def _recurrent(b, node, grads, direction_fn):
    """The shared driver: layout and directions around a per-direction backward pass."""
    _check_supported(node)
    inputs = list(node.inputs) + [None] * (8 - len(node.inputs))
    x, w, r, bias, _, h0, c0 = inputs[:7]
    hidden = node.attr("hidden_size")
    batch_first = bool(node.attr("layout", 0))
    g_y, g_yh, g_yc = (list(grads) + [None, None])[:3]
    y = b.ensure_output(node, 0, x.elem_type)  # the backward pass reads every hidden state
    if batch_first:  # to the time-major layout 0
        x, y, g_y = _permute(b, x, [1, 0, 2]), _permute(b, y, [1, 2, 0, 3]), _permute(b, g_y, [1, 2, 0, 3])
        h0, c0, g_yh, g_yc = (_permute(b, t, [1, 0, 2]) for t in (h0, c0, g_yh, g_yc))
    kind = node.attr("direction", "forward")
    flips = [False, True] if kind == "bidirectional" else [kind == "reverse"]
    results = []
    for d, flip in enumerate(flips):
        pick = b.const(np.int64(d))
        state = {
            "x": reverse_steps(b, x) if flip else x,
            "y": reverse_steps(b, b.Gather(y, pick, axis=1)) if flip else b.Gather(y, pick, axis=1),
            "w": b.Gather(w, pick, axis=0),
            "r": b.Gather(r, pick, axis=0),
            "bias": b.Gather(bias, pick, axis=0) if bias is not None else None,
            "h0": b.Gather(h0, pick, axis=0) if h0 is not None else None,
            "c0": b.Gather(c0, pick, axis=0) if c0 is not None else None,
            "g_y": None if g_y is None else b.Gather(g_y, pick, axis=1),
            "g_yh": None if g_yh is None else b.Gather(g_yh, pick, axis=0),
            "g_yc": None if g_yc is None else b.Gather(g_yc, pick, axis=0),
        }
        if flip and state["g_y"] is not None:
            state["g_y"] = reverse_steps(b, state["g_y"])
        result = direction_fn(b, hidden, node, state)
        if flip:
            result["x"] = reverse_steps(b, result["x"])
        results.append(result)
    d_x = b.add_all([res["x"] for res in results])

    def stacked(key):
        parts = [b.Unsqueeze(res[key], b.ints(_FIRST)) for res in results if res.get(key) is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else b.Concat(*parts, axis=0)

    d_h0, d_c0 = stacked("h0"), stacked("c0")
    if batch_first:
        d_x = _permute(b, d_x, [1, 0, 2])
        d_h0, d_c0 = _permute(b, d_h0, [1, 0, 2]), _permute(b, d_c0, [1, 0, 2])
    return [
        d_x,
        stacked("w"),
        stacked("r"),
        stacked("bias") if bias is not None else None,
        None,
        d_h0 if h0 is not None else None,
        d_c0 if c0 is not None else None,
    ]


def _check_supported(node) -> None:
    label = f"{node.op_type} (node '{node.name or '<unnamed>'}')"
    if len(node.inputs) > 4 and node.inputs[4] is not None:
        raise GradientError(f"the gradient of {label} with sequence_lens is not supported")
    if len(node.inputs) > 7 and node.inputs[7] is not None:
        raise GradientError(f"the gradient of {label} with peepholes (input P) is not supported")
    activations = node.attr("activations")
    if activations is not None:
        names = [a.decode() if isinstance(a, bytes) else a for a in activations]
        default = _DEFAULT_ACTIVATIONS[node.op_type]
        if any(a.lower() != default[i % len(default)].lower() for i, a in enumerate(names)):
            raise GradientError(f"the gradient of {label} with activations {names} is not supported")
    if node.attr("clip") is not None:
        raise GradientError(f"the gradient of {label} with clip is not supported")
    if node.attr("input_forget", 0):
        raise GradientError(f"the gradient of {label} with input_forget is not supported")
    if not node.attr("hidden_size"):
        raise GradientError(f"the gradient of {label} needs the hidden_size attribute")


def _permute(b, t, perm):
    return None if t is None else b.Transpose(t, perm=perm)


def reverse_steps(b, t):
    """``t`` reversed along its time (first) axis; Loop and Scan gradients use it too."""
    return b.Slice(t, b.ints([-1]), b.ints([_INT64_MIN]), b.ints([0]), b.ints([-1]))


def _previous(b, first, seq):
    """The per-step previous states ``[first, seq[0], ..., seq[T-2]]`` (time-major)."""
    head = b.Slice(seq, b.ints([0]), b.ints([-1]), b.ints([0]))
    return b.Concat(b.Unsqueeze(first, b.ints(_FIRST)), head, axis=0)


def _zeros_state(b, x, hidden: int) -> Value:
    """Zeros of shape (batch, hidden), the default initial state."""
    return b.zeros_like(x, b.Concat(b.axis_size(x, 1), b.ints([hidden]), axis=0))


def _gates(b, state, hprev, count: int, hidden: int):
    """The pre-activations X W^T + H R^T + Wb + Rb of all steps, split per gate."""
    pre = b.Add(
        b.MatMul(state["x"], b.Transpose(state["w"], perm=[1, 0])),
        b.MatMul(hprev, b.Transpose(state["r"], perm=[1, 0])),
    )
    if state["bias"] is not None:
        w_bias, r_bias = b.Split(state["bias"], b.ints([count * hidden] * 2), axis=0, _outputs=2)
        pre = b.Add(pre, b.Add(w_bias, r_bias))
    return b.Split(pre, b.ints([hidden] * count), axis=2, _outputs=count)


def _weight_grads(b, state, d_gates, d_recurrent, hprev, d_r=None):
    """dX, dW, dR and dB from the per-step gate gradients ``d_gates`` (T, B, G*H) and the gradients
    of the recurrent pre-activations ``d_recurrent`` (which differ from them only in GRU); ``d_r``
    replaces the default ``d_recurrent^T hprev`` where R multiplies something else."""
    flat_x, flat_g = b.Flatten(state["x"], axis=2), b.Flatten(d_gates, axis=2)
    flat_r = b.Flatten(d_recurrent, axis=2)
    if d_r is None:
        d_r = b.MatMul(b.Transpose(flat_r, perm=[1, 0]), b.Flatten(hprev, axis=2))
    result = {"x": b.MatMul(d_gates, state["w"]), "w": b.MatMul(b.Transpose(flat_g, perm=[1, 0]), flat_x), "r": d_r}
    if state["bias"] is not None:
        result["bias"] = b.Concat(
            b.reduce("ReduceSum", flat_g, _FIRST, keepdims=False),
            b.reduce("ReduceSum", flat_r, _FIRST, keepdims=False),
            axis=0,
        )
    return result


def _lstm_direction(b, hidden, node, state):
    x = state["x"]
    h0 = state["h0"] if state["h0"] is not None else _zeros_state(b, x, hidden)
    c0 = state["c0"] if state["c0"] is not None else _zeros_state(b, x, hidden)
    hprev = _previous(b, h0, state["y"])
    pre_i, pre_o, pre_f, pre_g = _gates(b, state, hprev, 4, hidden)
    i, o, f, g = b.Sigmoid(pre_i), b.Sigmoid(pre_o), b.Sigmoid(pre_f), b.Tanh(pre_g)

    def cell(sb, states, steps):  # c_t = f_t * c_{t-1} + i_t * g_t
        (c,), (f_t, u_t) = states, steps
        c = sb.Add(sb.Mul(f_t, c), u_t)
        return [c], [sb.Identity(c)]

    _, cells = _scan(b, [c0], [f, b.Mul(i, g)], cell, reverse=False)
    cprev, tanh_c = _previous(b, c0, cells), b.Tanh(cells)
    r = state["r"]

    def back(sb, states, steps):
        dh_next, dc_next = states
        g_y, o_t, tc_t, i_t, f_t, g_t, cp_t = steps if state["g_y"] is not None else (None, *steps)
        one = sb.scalar(1, o_t)
        dh = sb.Add(g_y, dh_next) if g_y is not None else dh_next
        dc = sb.Add(dc_next, sb.Mul(sb.Mul(dh, o_t), sb.Sub(one, sb.Mul(tc_t, tc_t))))
        d_i = sb.Mul(sb.Mul(dc, g_t), sb.Mul(i_t, sb.Sub(one, i_t)))
        d_o = sb.Mul(sb.Mul(dh, tc_t), sb.Mul(o_t, sb.Sub(one, o_t)))
        d_f = sb.Mul(sb.Mul(dc, cp_t), sb.Mul(f_t, sb.Sub(one, f_t)))
        d_g = sb.Mul(sb.Mul(dc, i_t), sb.Sub(one, sb.Mul(g_t, g_t)))
        d_pre = sb.Concat(d_i, d_o, d_f, d_g, axis=-1)
        return [sb.MatMul(d_pre, r), sb.Mul(dc, f_t)], [d_pre]

    initial = [_seed(b, state["g_yh"], h0), _seed(b, state["g_yc"], c0)]
    steps = [o, tanh_c, i, f, g, cprev]
    upstream = [state["g_y"]] if state["g_y"] is not None else []
    d_h0, d_c0, d_pre = _scan(b, initial, upstream + steps, back, reverse=True)
    result = _weight_grads(b, state, d_pre, d_pre, hprev)
    result.update(h0=d_h0, c0=d_c0)
    return result


def _gru_direction(b, hidden, node, state):
    x = state["x"]
    h0 = state["h0"] if state["h0"] is not None else _zeros_state(b, x, hidden)
    hprev = _previous(b, h0, state["y"])
    before_reset = bool(node.attr("linear_before_reset", 0))
    w_z, w_r, w_h = b.Split(state["w"], b.ints([hidden] * 3), axis=0, _outputs=3)
    r_zr, r_h = b.Split(state["r"], b.ints([2 * hidden, hidden]), axis=0, _outputs=2)
    biases = None
    if state["bias"] is not None:
        biases = b.Split(state["bias"], b.ints([hidden] * 6), axis=0, _outputs=6)

    def project(t, weight, *bias_terms):
        out = b.MatMul(t, b.Transpose(weight, perm=[1, 0]))
        return b.add_all([out, *bias_terms])

    pick = (lambda k: biases[k]) if biases is not None else (lambda k: None)
    r_z, r_r = b.Split(r_zr, b.ints([hidden, hidden]), axis=0, _outputs=2)
    z = b.Sigmoid(b.Add(project(x, w_z, pick(0), pick(3)), project(hprev, r_z)))
    reset = b.Sigmoid(b.Add(project(x, w_r, pick(1), pick(4)), project(hprev, r_r)))
    if before_reset:
        recurrent_h = project(hprev, r_h, pick(5))  # n = h R_h^T + Rb_h, then multiplied by r
        candidate = b.Tanh(b.Add(project(x, w_h, pick(2)), b.Mul(reset, recurrent_h)))
        reset_h = None
    else:
        reset_h = b.Mul(reset, hprev)
        candidate = b.Tanh(b.Add(project(x, w_h, pick(2), pick(5)), project(reset_h, r_h)))
        recurrent_h = None
    r_full = state["r"]

    def back(sb, states, steps):
        (dh_next,) = states
        g_y, z_t, r_t, c_t, hp_t, n_t = steps if state["g_y"] is not None else (None, *steps)
        one = sb.scalar(1, z_t)
        dh = sb.Add(g_y, dh_next) if g_y is not None else dh_next
        d_z = sb.Mul(sb.Mul(dh, sb.Sub(hp_t, c_t)), sb.Mul(z_t, sb.Sub(one, z_t)))
        d_a = sb.Mul(sb.Mul(dh, sb.Sub(one, z_t)), sb.Sub(one, sb.Mul(c_t, c_t)))
        keep = sb.Mul(dh, z_t)
        if before_reset:  # pre_h = x W_h^T + r * n
            d_r = sb.Mul(sb.Mul(d_a, n_t), sb.Mul(r_t, sb.Sub(one, r_t)))
            d_prev = sb.Add(keep, sb.MatMul(sb.Concat(d_z, d_r, sb.Mul(d_a, r_t), axis=-1), r_full))
        else:  # pre_h = x W_h^T + (r * h) R_h^T
            d_rh = sb.MatMul(d_a, r_h)
            d_r = sb.Mul(sb.Mul(d_rh, hp_t), sb.Mul(r_t, sb.Sub(one, r_t)))
            d_prev = sb.Add(sb.Add(keep, sb.MatMul(sb.Concat(d_z, d_r, axis=-1), r_zr)), sb.Mul(d_rh, r_t))
        return [d_prev], [sb.Concat(d_z, d_r, d_a, axis=-1)]

    steps = [z, reset, candidate, hprev, recurrent_h if before_reset else reset_h]
    scan_inputs = ([state["g_y"]] if state["g_y"] is not None else []) + steps
    d_h0, d_pre = _scan(b, [_seed(b, state["g_yh"], h0)], scan_inputs, back, reverse=True)
    if before_reset:  # the recurrent pre-activation of the candidate is n, scaled by r
        d_z, d_r, d_a = b.Split(d_pre, b.ints([hidden] * 3), axis=2, _outputs=3)
        d_recurrent = b.Concat(d_z, d_r, b.Mul(d_a, reset), axis=2)
        result = _weight_grads(b, state, d_pre, d_recurrent, hprev)
    else:  # R_h multiplies r * h, not h: its rows get their own product
        d_zr, d_a = b.Split(d_pre, b.ints([2 * hidden, hidden]), axis=2, _outputs=2)
        flat = b.Flatten(d_zr, axis=2)
        r_rows = b.MatMul(b.Transpose(flat, perm=[1, 0]), b.Flatten(hprev, axis=2))
        h_rows = b.MatMul(b.Transpose(b.Flatten(d_a, axis=2), perm=[1, 0]), b.Flatten(reset_h, axis=2))
        result = _weight_grads(b, state, d_pre, d_pre, hprev, d_r=b.Concat(r_rows, h_rows, axis=0))
    result["h0"] = d_h0
    return result


def _seed(b, upstream, like):
    """The initial state of a backward Scan: the upstream gradient of the last state, else zeros."""
    return upstream if upstream is not None else b.zeros_like(like)


def _scan(b, initial, sequences, body_fn, reverse: bool, n_out: int = 1):
    """A Scan over the time axis 0 of ``sequences`` carrying ``initial`` states.

    ``body_fn(sb, states, steps) -> (new_states, step_outputs)`` writes the body with ``sb``, a
    GradBuilder on the body graph, emitting ``n_out`` step outputs. With ``reverse``, steps run from
    last to first and the step outputs are still stacked in time order (the sequences are flipped
    with Slice rather than with Scan's direction attributes, which onnx.reference lacks). Returns
    the final states, then the stacked outputs.
    """
    body = Graph("scan_body")
    results = b.Scan(
        *initial,
        *[reverse_steps(b, s) if reverse else s for s in sequences],
        body=body,
        num_scan_inputs=len(sequences),
        _outputs=len(initial) + n_out,
    )
    # built once the Scan is in the graph, so names stay unique across scopes
    sb = GradBuilder(body, b.opset, constants_as_nodes=True)
    states = [_body_input(body, "state", v) for v in initial]
    steps = [_body_input(body, "step", v) for v in sequences]
    new_states, outputs = body_fn(sb, states, steps)
    elem = _known_elem_type(sequences[0])
    for value in [*new_states, *outputs]:
        exposed = sb.Identity(value) if value.is_graph_input() or value.producer() is None else value
        exposed.type = types.tensor_type(elem, None)
        body.outputs.append(exposed)
    for value in results:
        value.type = types.tensor_type(elem, None)
    stacked = [reverse_steps(b, v) if reverse else v for v in results[len(initial) :]]
    return (*results[: len(initial)], *stacked)


def _body_input(body: Graph, base: str, outer: Value) -> Value:
    return body.add_input(Value(body.fresh_name(base), types.tensor_type(_known_elem_type(outer), None)))


def _known_elem_type(value: Value) -> int:
    if value.elem_type is None:
        raise GradientError(f"the element type of {value.name!r} is unknown (shape inference could not tell it)")
    return value.elem_type
