"""Loop and Scan gradients: loops with carried values, step outputs and outer-scope reads, a trip
count or a condition computed in the body, checked against finite differences (float64,
onnx.reference) and onnxruntime (float32); unsupported forms are refused naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients
from onnx import TensorProto, helper, numpy_helper

from onnxgraph.autodiff import GradientError, build_gradient

FLOAT, INT64, BOOL = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def _info(name, elem, shape=None):
    return helper.make_tensor_value_info(name, elem, shape)


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, "g", inputs, [_info(o, FLOAT) for o in outputs], list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _loop_body(condition="pass"):
    """h' = tanh(h @ w + 0.1 * i) (w read from the outer scope), a step output h' * h, an int64
    counter carried along; the condition passes through (or is a constant true, or computed)."""
    nodes = [
        helper.make_node("Cast", ["i"], ["i_f"], to=FLOAT),
        helper.make_node("Constant", [], ["tenth"], value=numpy_helper.from_array(np.array(0.1, np.float32))),
        helper.make_node("Mul", ["i_f", "tenth"], ["shift"]),
        helper.make_node("MatMul", ["h", "w"], ["hw"]),
        helper.make_node("Add", ["hw", "shift"], ["pre"]),
        helper.make_node("Tanh", ["pre"], ["h_next"]),
        helper.make_node("Mul", ["h_next", "h"], ["step_out"]),
        helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array(1, np.int64))),
        helper.make_node("Add", ["n", "one"], ["n_next"]),
    ]
    if condition == "pass":
        nodes.append(helper.make_node("Identity", ["cond"], ["cond_out"]))
    elif condition == "true":
        nodes.append(helper.make_node("Constant", [], ["cond_out"], value=numpy_helper.from_array(np.array(True))))
    else:
        nodes.append(helper.make_node("Constant", [], ["limit"], value=numpy_helper.from_array(np.array(2, np.int64))))
        nodes.append(helper.make_node("Less", ["n_next", "limit"], ["cond_out"]))
    return helper.make_graph(
        nodes,
        "body",
        [_info("i", INT64, []), _info("cond", BOOL, []), _info("h", FLOAT, None), _info("n", INT64, [])],
        [
            _info("cond_out", BOOL, []),
            _info("h_next", FLOAT, None),
            _info("n_next", INT64, []),
            _info("step_out", FLOAT, None),
        ],
    )


def _loop_model(trip_count="constant", condition="pass", outputs=("h_final", "steps")):
    inputs = [_info("h0", FLOAT, [2, 3]), _info("w", FLOAT, [3, 3])]
    inits = [numpy_helper.from_array(np.array(0, np.int64), "n0")]
    if trip_count == "constant":
        inits.append(numpy_helper.from_array(np.array(3, np.int64), "m"))
    elif trip_count == "input":
        inputs.append(_info("m", INT64, []))
    loop = helper.make_node(
        "Loop",
        ["m" if trip_count else "", "", "h0", "n0"],
        ["h_final", "n_final", "steps"],
        name="the_loop",
        body=_loop_body(condition),
    )
    return _model([loop], inputs, list(outputs), inits)


@pytest.mark.parametrize(
    ("trip_count", "condition", "outputs", "steps"),
    [
        ("constant", "pass", ("h_final", "steps"), None),
        ("input", "true", ("steps",), 4),
        ("input", "pass", ("h_final",), 1),
        ("input", "pass", ("h_final", "steps"), 0),
        ("constant", "computed", ("h_final", "steps"), None),
        (None, "computed", ("h_final", "steps"), None),
    ],
    ids=[
        "constant-count",
        "runtime-count-steps-only",
        "one-step-final-only",
        "zero-steps",
        "computed-condition-stops-early",
        "while-loop-without-trip-count",
    ],
)
def test_loop_gradient_matches_finite_differences(trip_count, condition, outputs, steps):
    model = _loop_model(trip_count, condition, outputs)
    rng = np.random.default_rng(0)
    feeds = {"h0": rng.uniform(-1, 1, (2, 3)), "w": rng.uniform(-1, 1, (3, 3))}
    if steps is not None:
        feeds["m"] = np.array(steps, np.int64)
    check_gradients(model, feeds, ["h0", "w"])


def _scan_model(directions=None):
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["x_t", "w"], ["xw"]),
            helper.make_node("Mul", ["s", "xw"], ["prod"]),
            helper.make_node("Sin", ["prod"], ["s_next"]),
            helper.make_node("Add", ["s_next", "x_t"], ["y_t"]),
        ],
        "scan_body",
        [_info("s", FLOAT, None), _info("x_t", FLOAT, None)],
        [_info("s_next", FLOAT, None), _info("y_t", FLOAT, None)],
    )
    attrs = {"scan_input_directions": directions} if directions else {}
    node = helper.make_node(
        "Scan", ["s0", "x"], ["s_final", "ys"], name="the_scan", body=body, num_scan_inputs=1, **attrs
    )
    return _model(
        [node],
        [_info("s0", FLOAT, [2, 3]), _info("x", FLOAT, ["T", 2, 3]), _info("w", FLOAT, [3, 3])],
        ["s_final", "ys"],
    )


@pytest.mark.parametrize("steps", [1, 4])
def test_scan_gradient_matches_finite_differences(steps):
    rng = np.random.default_rng(steps)
    feeds = {"s0": rng.uniform(-1, 1, (2, 3)), "x": rng.uniform(-1, 1, (steps, 2, 3)), "w": rng.uniform(-1, 1, (3, 3))}
    check_gradients(_scan_model(), feeds, ["s0", "x", "w"])


def _nested_model():
    """A Loop whose body holds an If."""
    branch = helper.make_graph([helper.make_node("Neg", ["h"], ["neg"])], "then", [], [_info("neg", FLOAT, None)])
    other = helper.make_graph([helper.make_node("Identity", ["h"], ["same"])], "else", [], [_info("same", FLOAT, None)])
    body = helper.make_graph(
        [
            helper.make_node("If", ["cond"], ["picked"], then_branch=branch, else_branch=other),
            helper.make_node("MatMul", ["picked", "w"], ["h_next"]),
        ],
        "body",
        [_info("i", INT64, []), _info("cond", BOOL, []), _info("h", FLOAT, None)],
        [_info("cond", BOOL, []), _info("h_next", FLOAT, None)],
    )
    loop = helper.make_node("Loop", ["m", "", "h0"], ["h_final"], name="the_loop", body=body)
    inits = [numpy_helper.from_array(np.array(2, np.int64), "m")]
    return _model([loop], [_info("h0", FLOAT, [2, 3]), _info("w", FLOAT, [3, 3])], ["h_final"], inits)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_nested_model(), "Loop \\(node 'the_loop'\\) is not supported: its body holds subgraphs"),
        (_scan_model([1]), "Scan \\(node 'the_scan'\\) with scan_input_directions"),
    ],
    ids=["nested-subgraph", "reverse-scan"],
)
def test_other_forms_are_refused_naming_the_node(model, message):
    with pytest.raises(GradientError, match=message):
        build_gradient(model, vjp=True, wrt=["w"])
