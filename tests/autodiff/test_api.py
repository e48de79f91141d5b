"""build_gradient's contract: loss choices, wrt defaults, names and metadata, paths, opsets."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from gradcheck import check_gradients
from onnx import parser
from onnx.reference import ReferenceEvaluator

import onnxgraph
from onnxgraph.autodiff import METADATA_KEY, GradientError, build_gradient
from onnxgraph.runtime.sessions import create_session


def _model(text: str) -> onnx.ModelProto:
    model = parser.parse_model(text)
    onnx.checker.check_model(model)
    return model


LINEAR = """
<ir_version: 8, opset_import: ["" : 18]>
linear (float[4, 3] x) => (float[4, 2] y) <float[3, 2] w = {0.1, -0.2, 0.3, 0.4, -0.5, 0.6}, float[2] b = {0.05, -0.05}>
{
    xw = MatMul(x, w)
    y = Add(xw, b)
}
"""


def _run(model, feeds):
    proto = model.to_proto() if isinstance(model, onnxgraph.Model) else model
    names = [o.name for o in proto.graph.output]
    return dict(zip(names, ReferenceEvaluator(proto).run(None, feeds)))


def _mapping(model) -> dict:
    return json.loads(model.metadata_props[METADATA_KEY])


def _loss_fd_check(grad_model, feeds, param: str, loss_name: str):
    """Central differences of the loss output w.r.t. an initializer of the gradient model."""
    proto = grad_model.to_proto()
    results = _run(proto, feeds)
    analytic = results[_mapping(grad_model)[param]]
    init = next(i for i in proto.graph.initializer if i.name == param)
    base = onnx.numpy_helper.to_array(init).astype(np.float64)
    numeric = np.zeros(base.size)
    for k in range(base.size):
        losses = []
        for sign in (1, -1):
            shifted = base.copy()
            shifted.reshape(-1)[k] += sign * 1e-3
            init.CopyFrom(onnx.numpy_helper.from_array(shifted.astype(np.float32), param))
            losses.append(float(_run(proto, feeds)[loss_name]))
        numeric[k] = (losses[0] - losses[1]) / 2e-3
    np.testing.assert_allclose(analytic.reshape(-1), numeric, rtol=2e-2, atol=2e-3)


@pytest.mark.parametrize("kind", ["mse", "l1", "bce_with_logits", "sum", "cross_entropy"])
def test_loss_fn_appends_loss_and_target(kind):
    rng = np.random.default_rng(1)
    grad = build_gradient(_model(LINEAR), loss_fn=kind, output="y")
    mapping = _mapping(grad)
    assert set(mapping) >= {"w", "b", "@loss"}
    names = {v.name: v for v in grad.graph.inputs}
    feeds = {"x": rng.standard_normal((4, 3)).astype(np.float32)}
    if kind == "sum":
        assert "@target" not in mapping and "target" not in names
    elif kind == "cross_entropy":
        assert names["target"].elem_type == onnx.TensorProto.INT64 and names["target"].shape == (4,)
        feeds["target"] = np.array([0, 1, 1, 0], dtype=np.int64)
    else:
        assert names["target"].shape == (4, 2)
        feeds["target"] = rng.uniform(0, 1, (4, 2)).astype(np.float32)
    assert [o.name for o in grad.graph.outputs][:2] == ["y", "loss"]
    for param in ("w", "b"):
        _loss_fd_check(grad, feeds, param, "loss")


def test_loss_on_scalar_output_is_seeded_with_one():
    text = LINEAR.replace("=> (float[4, 2] y)", "=> (float[4, 2] y, float l)").replace(
        "y = Add(xw, b)", "y = Add(xw, b)\n    sq = Mul(y, y)\n    l = ReduceSum<keepdims=0>(sq)"
    )
    grad = build_gradient(_model(text), loss="l")
    feeds = {"x": np.random.default_rng(2).standard_normal((4, 3)).astype(np.float32)}
    _loss_fd_check(grad, feeds, "w", "l")


def test_loss_must_be_scalar():
    with pytest.raises(GradientError, match="not a scalar"):
        build_gradient(_model(LINEAR), loss="y")


def test_exactly_one_loss_choice():
    with pytest.raises(GradientError, match="exactly one"):
        build_gradient(_model(LINEAR), loss="y", vjp=True)
    with pytest.raises(GradientError, match="exactly one"):
        build_gradient(_model(LINEAR))


def test_unknown_names_are_errors():
    with pytest.raises(GradientError, match="'nope' is not an output"):
        build_gradient(_model(LINEAR), loss_fn="mse", output="nope")
    with pytest.raises(GradientError, match="wrt 'nope'"):
        build_gradient(_model(LINEAR), vjp=True, wrt=["nope"])
    with pytest.raises(GradientError, match="unknown loss function"):
        build_gradient(_model(LINEAR), loss_fn="hinge", output="y")


def test_integer_outputs_cannot_be_differentiated():
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[3] x) => (int64 i) {
        i = ArgMax<keepdims=0>(x)
    }
    """
    with pytest.raises(GradientError, match="floating-point"):
        build_gradient(_model(text), vjp=True, wrt=["x"])
    with pytest.raises(GradientError, match="floating-point"):
        build_gradient(_model(text), loss_fn="sum", output="i", wrt=["x"])


def test_values_of_unknown_element_type_are_errors_not_tracebacks():
    # A custom op's output that neither the model nor inference types: is_float lets it through,
    # but a new output (the loss, or a gradient) cannot be typed from it.
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3])
    y = onnx.helper.make_value_info("y", onnx.TypeProto())
    node = onnx.helper.make_node("Mystery", ["x"], ["y"], domain="custom")
    graph = onnx.helper.make_graph([node], "g", [x], [y])
    opsets = [onnx.helper.make_opsetid("", 18), onnx.helper.make_opsetid("custom", 1)]
    model = onnx.helper.make_model(graph, opset_imports=opsets)
    with pytest.raises(GradientError, match="output 'y' has an unknown element type"):
        build_gradient(model, loss_fn="sum", output="y", wrt=["x"])
    with pytest.raises(GradientError, match="wrt 'y' has an unknown element type"):
        build_gradient(model, vjp=True, wrt=["y"])


def test_default_wrt_is_every_float_initializer_and_outputs_are_kept():
    text = LINEAR.replace(
        "float[2] b = {0.05, -0.05}>", "float[2] b = {0.05, -0.05}, int64[2] shape = {4, 2}>"
    ).replace("y = Add(xw, b)", "y0 = Add(xw, b)\n    y = Reshape(y0, shape)")
    grad = build_gradient(_model(text), vjp=True)
    mapping = _mapping(grad)
    assert {k for k in mapping if "@" not in k} == {"w", "b"}
    assert mapping["y@upstream"] == "y_grad"
    assert grad.graph.outputs[0].name == "y"
    feeds = {"x": np.ones((4, 3), np.float32), "y_grad": np.ones((4, 2), np.float32)}
    np.testing.assert_allclose(_run(grad, feeds)["y"], _run(_model(text), {"x": feeds["x"]})["y"])


def test_taken_names_get_a_unique_suffix():
    text = LINEAR.replace("(float[4, 3] x)", "(float[4, 3] x, float[3, 2] w_grad, float[4, 2] y_grad)")
    grad = build_gradient(_model(text), vjp=True, wrt=["w", "b"])
    mapping = _mapping(grad)
    assert mapping["w"] == "w_grad_1" and mapping["b"] == "b_grad"
    assert mapping["y@upstream"] == "y_grad_1"
    assert len({v.name for v in grad.graph.inputs}) == len(grad.graph.inputs)


def test_vjp_of_one_output_and_wrt_graph_input():
    text = LINEAR.replace("=> (float[4, 2] y)", "=> (float[4, 2] y, float[4, 2] z)").replace(
        "y = Add(xw, b)", "y = Add(xw, b)\n    z = Exp(y)"
    )
    grad = build_gradient(_model(text), vjp=True, output="z", wrt=["x"])
    assert _mapping(grad) == {"z@upstream": "z_grad", "x": "x_grad"}
    model = _model(text)
    feeds = {"x": np.random.default_rng(3).standard_normal((4, 3))}
    check_gradients(_keep_outputs(model, ["z"]), feeds, ["x"])


def _keep_outputs(model, names):
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [o for o in model.graph.output if o.name in names]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    return model


def test_fan_in_and_reuse_of_forward_values():
    """x feeds three uses; Exp, Softmax and LayerNormalization results are reused, not recomputed."""
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[2, 4] x, float[4] s) => (float[2, 4] y) {
        e = Exp(x)
        p = Softmax(e)
        sq = Mul(x, p)
        n = LayerNormalization(sq, s)
        y = Add(n, x)
    }
    """
    model = _model(text)
    rng = np.random.default_rng(4)
    check_gradients(model, {"x": rng.standard_normal((2, 4)), "s": rng.standard_normal(4)}, ["x", "s"])
    grad = build_gradient(model, vjp=True, wrt=["x", "s"])
    ops = [n.op_type for n in grad.graph]
    assert ops.count("Exp") == 1 and ops.count("Softmax") == 1 and ops.count("LayerNormalization") == 1
    assert "ReduceMean" in ops  # the backward formula's means, but the forward statistics come from the node:
    ln = next(n for n in grad.graph if n.op_type == "LayerNormalization")
    assert all(o.name and o.has_uses() for o in ln.outputs[1:3])


def test_only_nodes_between_wrt_and_loss_are_differentiated():
    """An op without a rule off the path (here a custom-domain op on another output) is fine."""
    text = """
    <ir_version: 8, opset_import: ["" : 18, "custom" : 1]>
    g (float[3] x, float[3] u) => (float[3] y, float[3] other) {
        y = Tanh(x)
        other = custom.Mystery(u)
    }
    """
    grad = build_gradient(_model(text), vjp=True, output="y", wrt=["x"])
    assert {n.op_type for n in grad.graph if n.domain == ""} >= {"Tanh", "Mul"}


def test_missing_rule_names_op_node_and_path():
    text = """
    <ir_version: 8, opset_import: ["" : 18, "custom" : 1]>
    g (float[3] x) => (float[3] y) <float[3] w = {1.0, 2.0, 3.0}> {
        a = Mul(x, w)
        b = custom.Mystery(a)
        y = Sigmoid(b)
    }
    """
    model = _model(text)
    model.graph.node[1].name = "mystery_node"
    with pytest.raises(GradientError) as err:
        build_gradient(model, vjp=True)
    message = str(err.value)
    assert "custom::Mystery" in message and "mystery_node" in message
    assert "w -> Mul -> Mystery(mystery_node) -> Sigmoid -> y" in message


def test_stop_gradient_inputs_and_ops():
    """Shapes, indices and comparisons carry no gradient; a wrt reached only through them gets zeros."""
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[2, 3] x, float[2, 3] v) => (float[3, 2] y, float[2] z) {
        s = Shape(v)
        r = Reverse(s)
        y = Reshape(x, r)
        m = ArgMax<axis=1, keepdims=0>(v)
        z = Cast<to=1>(m)
    }
    """.replace("r = Reverse(s)", "r = Slice(s, start, end, axes, steps)").replace(
        "(float[2, 3] x, float[2, 3] v)",
        "(float[2, 3] x, float[2, 3] v, int64[1] start, int64[1] end, int64[1] axes, int64[1] steps)",
    )
    model = _model(text)
    grad = build_gradient(model, vjp=True, wrt=["x", "v"])
    feeds = {
        "x": np.arange(6, dtype=np.float32).reshape(2, 3),
        "v": np.ones((2, 3), np.float32),
        "start": np.array([-1]),
        "end": np.array([-3]),
        "axes": np.array([0]),
        "steps": np.array([-1]),
        "y_grad": np.arange(6, dtype=np.float32).reshape(3, 2),
        "z_grad": np.ones(2, np.float32),
    }
    out = _run(grad, feeds)
    np.testing.assert_array_equal(out["x_grad"], feeds["y_grad"].reshape(2, 3))
    np.testing.assert_array_equal(out["v_grad"], np.zeros((2, 3)))


@pytest.mark.parametrize(
    ("b_rows", "shape_ops_expected"),
    [
        ("1", False),  # same symbols and size-1 dims: broadcast axes are found while building
        ("K", True),  # N against K may or may not broadcast: reduced with Shape-based ops at run time
    ],
)
def test_unbroadcasting_of_symbolic_dims(b_rows, shape_ops_expected):
    text = f"""
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[N, 3] x, float[{b_rows}, 3] b, float[N, 1] c, float[M, 3, 2] w) => (float[M, N, 2] y) {{
        t = Add(x, b)
        u = Mul(t, c)
        y = MatMul(u, w)
    }}
    """
    model = _model(text)
    rng = np.random.default_rng(5)
    feeds = {
        "x": rng.standard_normal((4, 3)),
        "b": rng.standard_normal((1, 3)),
        "c": rng.standard_normal((4, 1)),
        "w": rng.standard_normal((2, 3, 2)),
    }
    check_gradients(model, feeds, ["x", "b", "c", "w"])
    grad = build_gradient(model, vjp=True, wrt=["x", "b", "c", "w"])
    assert ("Shape" in {n.op_type for n in grad.graph}) == shape_ops_expected


def test_only_standard_ops_are_emitted():
    """The gradient of every table op uses default-domain ops from the model's opset, none of the
    training-only contrib ops (…Grad, BroadcastGradientArgs)."""
    from gradcheck import declare_output_shapes, spec_model
    from op_specs import SPECS
    from reference_ops import NEW_OPS

    for spec in SPECS:
        model, feeds, wrt = spec_model(spec)
        names = [o.name for o in model.graph.output]
        model = declare_output_shapes(
            model, dict(zip(names, ReferenceEvaluator(model, new_ops=NEW_OPS).run(None, feeds)))
        )
        grad = build_gradient(model, vjp=True, wrt=wrt).to_proto()
        for node in grad.graph.node:
            assert node.domain in ("", "ai.onnx"), (spec.name, node.op_type)
            assert not node.op_type.endswith("Grad") and node.op_type != "BroadcastGradientArgs", spec.name
            onnx.defs.get_schema(node.op_type, spec.opset, "")  # raises when the opset lacks it
        onnx.checker.check_model(grad, full_check=True)


def test_old_opset_is_upgraded_and_too_new_is_refused():
    old = _model(
        LINEAR.replace('"" : 18', '"" : 11').replace("float[2] b = {0.05, -0.05}", "float[2] b = {0.05, -0.05}")
    )
    grad = build_gradient(old, loss_fn="mse", output="y")
    assert grad.opset_imports[""] == 13
    rng = np.random.default_rng(6)
    feeds = {
        "x": rng.standard_normal((4, 3)).astype(np.float32),
        "target": rng.standard_normal((4, 2)).astype(np.float32),
    }
    _loss_fd_check(grad, feeds, "w", "loss")
    future = _model(LINEAR)
    future.opset_import[0].version = onnx.defs.onnx_opset_version() + 1
    with pytest.raises(GradientError, match="newer than"):
        build_gradient(future, vjp=True)


def test_cleanup_hook_receives_the_model():
    seen = []
    build_gradient(_model(LINEAR), vjp=True, cleanup=seen.append)
    assert len(seen) == 1 and isinstance(seen[0], onnxgraph.Model)


def test_dropout_training_gradient_on_onnxruntime_uses_the_mask():
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[4, 5] x) => (float[4, 5] y, bool[4, 5] mask) <float ratio = {0.3}, bool training = {1}> {
        y, mask = Dropout(x, ratio, training)
    }
    """
    grad = build_gradient(_model(text), vjp=True, output="y", wrt=["x"]).to_proto()
    session = create_session(grad.SerializeToString())
    upstream = np.random.default_rng(7).standard_normal((4, 5)).astype(np.float32)
    mask, dx = session.run(["mask", "x_grad"], {"x": np.ones((4, 5), np.float32), "y_grad": upstream})
    assert 0 < mask.sum() < mask.size
    np.testing.assert_allclose(dx, upstream * mask / 0.7, rtol=1e-6)


NEWEST = onnx.defs.onnx_opset_version()


@pytest.mark.parametrize("opset", [13, 15, 17, 18, 21, NEWEST])
def test_every_supported_opset(opset):
    """The op forms that changed across opsets (Reduce axes, Split sizes) at each end of the range;
    onnxruntime is compared where it knows the opset."""
    reduce = "ReduceMean<axes=[1], keepdims=1>(h)" if opset < 18 else "ReduceMean<keepdims=1>(h, axis1)"
    ir_version = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    text = f"""
    <ir_version: {ir_version}, opset_import: ["" : {opset}]>
    g (float[3, 4] x, float[4, 4] w) => (float[3, 4] y) <int64[1] axis1 = {{1}}, int64[2] halves = {{2, 2}}> {{
        h = MatMul(x, w)
        m = {reduce}
        c = Sub(h, m)
        a, b = Split<axis=1>(c, halves)
        t = Tanh(a)
        s = Softmax<axis=1>(b)
        y = Concat<axis=1>(t, s)
    }}
    """
    model = _model(text)
    rng = np.random.default_rng(opset)
    feeds = {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal((4, 4))}
    check_gradients(model, feeds, ["x", "w"], compare_onnxruntime=opset <= 23)
    assert build_gradient(model, vjp=True, wrt=["w"]).opset_imports[""] == opset


def test_the_callers_model_is_left_unchanged():
    model = onnxgraph.from_proto(_model(LINEAR))
    before = model.to_proto().SerializeToString()
    build_gradient(model, loss_fn="mse", output="y")
    assert model.to_proto().SerializeToString() == before


def test_max_pool_ties_share_the_gradient():
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[1, 1, 2, 4] x) => (float[1, 1, 1, 2] y) {
        y = MaxPool<kernel_shape=[2, 2], strides=[2, 2]>(x)
    }
    """
    grad = build_gradient(_model(text), vjp=True, wrt=["x"])
    x = np.array([[[[1, 1, 0, 5], [1, 1, 2, 3]]]], np.float32)
    out = _run(grad, {"x": x, "y_grad": np.array([[[[8, 4]]]], np.float32)})
    np.testing.assert_array_equal(out["x_grad"], [[[[2, 2, 0, 4], [2, 2, 0, 0]]]])
    session = create_session(grad.to_proto().SerializeToString())
    (on_ort,) = session.run(["x_grad"], {"x": x, "y_grad": np.array([[[[8, 4]]]], np.float32)})
    np.testing.assert_array_equal(on_ort, out["x_grad"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('y = Einsum<equation="ii->i">(sq)', "repeated index"),
        (
            ('y = Resize<mode="linear", coordinate_transformation_mode="tf_crop_and_resize">(x, roi, scales)'),
            "tf_crop_and_resize",
        ),
    ],
)
def test_unsupported_forms_are_clear_errors(body, message):
    text = f"""
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[1, 1, 4, 4] x) => (float[1, 1, 4, 4] y)
      <int64[8] pads = {{0, 0, 1, -1, 0, 0, 0, 1}}, float[8] roi = {{0, 0, 0, 0, 1, 1, 1, 1}},
       float[4] scales = {{1, 1, 1, 1}}, int64[2] sq_shape = {{4, 4}}> {{
        sq = Reshape(x, sq_shape)
        {body}
    }}
    """
    model = parser.parse_model(text)
    with pytest.raises(GradientError, match=message):
        build_gradient(model, vjp=True, wrt=["x"])


IF_MODEL = """
<ir_version: 8, opset_import: ["" : 18]>
g (float[3] x, float[3] w) => (float[3] y) {
    s = ReduceSum<keepdims=0>(x)
    zero = Constant<value=float {0.0}>()
    c = Greater(s, zero)
    y = If(c) <
        then_branch = then_g () => (float[3] t) { t = Mul(x, w) },
        else_branch = else_g () => (float[3] e) { e0 = Sin(x)  e1 = Mul(e0, e0)  e = Add(e1, w) }
    >
}
"""


@pytest.mark.parametrize("branch", ["then", "else"])
def test_if_differentiates_the_taken_branch(branch):
    model = _model(IF_MODEL)
    rng = np.random.default_rng(8)
    x = rng.uniform(0.2, 1.0, 3) * (1 if branch == "then" else -1)
    check_gradients(model, {"x": x, "w": rng.standard_normal(3)}, ["x", "w"])
    grad = build_gradient(model, vjp=True, wrt=["x", "w"]).to_proto()
    assert [n.op_type for n in grad.graph.node].count("If") == 2


def test_an_input_the_rule_treats_as_constant_cannot_be_a_wrt_path():
    text = """
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[1, 1, 2, 2] x, float[4] s) => (float[1, 1, 4, 4] y) {
        y = Resize<mode="nearest">(x, , s)
    }
    """
    with pytest.raises(GradientError, match="input 2 \\('s'\\) of Resize .* treats it as a constant"):
        build_gradient(_model(text), vjp=True, wrt=["x", "s"])


@pytest.mark.parametrize("mode", ["reflect", "edge"])
def test_pad_with_pads_known_only_at_run_time(mode):
    """Pads given as an input: the scatter-add through padded element positions."""
    text = f"""
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[2, 4] x, int64[4] pads) => (float[3, 7] y) {{
        y = Pad<mode="{mode}">(x, pads)
    }}
    """
    rng = np.random.default_rng(9)
    feeds = {"x": rng.standard_normal((2, 4)), "pads": np.array([1, 2, 0, 1], dtype=np.int64)}
    check_gradients(_model(text), feeds, ["x"])
    grad = build_gradient(_model(text), vjp=True, wrt=["x"])
    assert "ScatterElements" in {n.op_type for n in grad.graph}


def test_gradient_into_an_output_the_rule_does_not_handle_is_refused():
    """A rule declares the outputs it handles; a gradient reaching another one stops the build."""
    from onnxgraph.autodiff.registry import RULES, register

    @register("TwoOut", domain="test.autodiff", outputs=(0,))
    def two_out(b, node, grads):
        return [grads[0]]

    text = """
    <ir_version: 8, opset_import: ["" : 18, "test.autodiff" : 1]>
    g (float[3] x) => (float[3] second) {
        first, second = test.autodiff.TwoOut(x)
    }
    """
    try:
        with pytest.raises(GradientError, match=r"output 1 \('second'\) of TwoOut"):
            build_gradient(_model(text), vjp=True, wrt=["x"])
    finally:
        del RULES[("test.autodiff", "TwoOut")]
