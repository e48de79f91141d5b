"""Patterns of real torch.onnx exports (models/build.py ``EXPORT_PATTERNS``): gradients against
finite differences and onnxruntime at two batch sizes (and two audio lengths) of one gradient model.

Each pattern once made ``build_gradient`` refuse the model: dims shape inference loses (channel
shuffle, dynamic audio length), a rank it cannot follow (Unsqueeze/Squeeze with computed axes),
Resize with Constant-node scales or Shape-built sizes, a deduplicated parameter, an If.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx.parser
import pytest
from gradcheck import check_gradients, to_float64
from onnx.reference import ReferenceEvaluator
from test_models import initializers_as_inputs, models

from onnxgraph.autodiff import METADATA_KEY, GradientError, build_gradient
from onnxgraph.runtime.sessions import create_session

BATCHES = (2, 3)


def _input(name: str, batch: int, rng) -> dict[str, np.ndarray]:
    """The data input of a pattern at a batch size (audio gets a length that varies with it)."""
    shapes = {
        "channel_shuffle_cnn": (batch, 3, 8, 8),
        "audio_frontend": (batch, 40 + 7 * batch),
        "vit_squeeze_chain": (batch, 5, 4),
        "interpolate": (batch, 2, 3, 3),
        "layernorm_dedup": (batch, 4),
        "if_branches": (batch, 3),
    }
    key = "wav" if name == "audio_frontend" else "x"
    return {key: rng.standard_normal(shapes[name])}


def _params(model: onnx.ModelProto) -> list[str]:
    return [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and i.dims]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name", [n for n in models.EXPORT_PATTERNS if n != "if_branches"])
def test_gradients_match_finite_differences(name, batch):
    model = models.EXPORT_PATTERNS[name]()
    params = _params(model)
    model, values = initializers_as_inputs(model, params)
    rng = np.random.default_rng(batch)
    feeds = {**_input(name, batch, rng), **{k: v.astype(np.float64) for k, v in values.items()}}
    check_gradients(model, feeds, [*params, *_input(name, 1, rng)], coords_per_input=6, ort_tol=5e-3)


@pytest.mark.parametrize("name", ["channel_shuffle_cnn", "audio_frontend", "vit_squeeze_chain", "interpolate"])
def test_one_gradient_model_runs_at_two_batch_sizes(name):
    """Built once with symbolic dims, the gradient model runs on onnxruntime at both sizes."""
    model = models.EXPORT_PATTERNS[name]()
    grad = build_gradient(model, vjp=True)
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    session = create_session(grad.to_proto().SerializeToString())
    rng = np.random.default_rng(0)
    for batch in BATCHES:
        feeds = {k: v.astype(np.float32) for k, v in _input(name, batch, rng).items()}
        (y,) = create_session(model.SerializeToString()).run(["y"], feeds)
        feeds[mapping["y@upstream"]] = np.ones_like(y)
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        np.testing.assert_allclose(outputs["y"], y, rtol=1e-5, atol=1e-6)
        for param in _params(model):
            assert np.all(np.isfinite(outputs[mapping[param]])) and np.any(outputs[mapping[param]])


def test_the_patterns_lose_what_they_claim_to():
    """onnx shape inference alone loses the channels after the shuffle, the audio length after the
    first Conv and the rank after the computed Unsqueeze: the builder must not rely on it."""

    def inferred(model, value):
        found = onnx.shape_inference.infer_shapes(model, data_prop=True).graph.value_info
        info = next((v for v in found if v.name == value), None)
        if info is None or not info.type.tensor_type.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]

    assert inferred(models.channel_shuffle_cnn(), "u")[1] is None
    assert inferred(models.audio_frontend(), "c1")[2] is None
    assert inferred(models.vit_squeeze_chain(), "lifted") is None


def test_a_deduplicated_parameter_is_untied_by_default():
    """``ln2_weight = Identity(ln1_weight)``: both get gradients of their own, as in PyTorch, and
    ``ln2_weight`` becomes an initializer that can be fed and trained apart."""
    model = models.layernorm_dedup()
    grad = build_gradient(model, vjp=True)
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    assert {"ln1_weight", "ln2_weight", "ln1_bias", "ln2_bias"} <= set(mapping)
    assert "ln2_weight" in grad.graph.initializers and "Identity" not in {
        n.op_type for n in grad.graph if n.outputs[0].name in ("ln2_weight", "ln2_bias")
    }
    # untied: each gradient matches finite differences of its own copy (see the test above), and
    # the tied sum differs from either part
    rng = np.random.default_rng(4)
    feeds = {"x": rng.standard_normal((3, 4)).astype(np.float32)}
    session = create_session(grad.to_proto().SerializeToString())
    feeds[mapping["y@upstream"]] = rng.standard_normal((3, 3)).astype(np.float32)
    out = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    tied = build_gradient(model, vjp=True, wrt=["ln1_weight"])
    tied_map = json.loads(tied.metadata_props[METADATA_KEY])
    (tied_grad,) = create_session(tied.to_proto().SerializeToString()).run([tied_map["ln1_weight"]], feeds)
    np.testing.assert_allclose(tied_grad, out[mapping["ln1_weight"]] + out[mapping["ln2_weight"]], rtol=1e-5, atol=1e-6)


def test_wrt_an_intermediate_value_is_its_own_gradient():
    """Naming a computed value differentiates with respect to it as a leaf: the gradient stops there
    (the fc0 weight upstream of it gets none) and equals the gradient of the model cut at that value."""
    model = models.layernorm_dedup()
    grad = build_gradient(model, vjp=True, wrt=["t", "fc0_w"])
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    upstream = rng.standard_normal((2, 3)).astype(np.float32)
    session = create_session(grad.to_proto().SerializeToString())
    got = dict(
        zip([o.name for o in session.get_outputs()], session.run(None, {"x": x, mapping["y@upstream"]: upstream}))
    )
    np.testing.assert_array_equal(got[mapping["fc0_w"]], np.zeros((4, 4), np.float32))

    cut = onnx.ModelProto.FromString(model.SerializeToString())  # t becomes an input
    keep = [n for n in cut.graph.node if "t" not in n.output]
    del cut.graph.node[:]
    cut.graph.node.extend(keep)
    cut.graph.input.append(onnx.helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, ["batch", 4]))
    t = np.tanh(ReferenceEvaluator(model).run(["a"], {"x": x})[0])
    reference = build_gradient(cut, vjp=True, wrt=["t"])
    ref_map = json.loads(reference.metadata_props[METADATA_KEY])
    feeds = {"x": x, "t": t, ref_map["y@upstream"]: upstream}
    (expected,) = create_session(reference.to_proto().SerializeToString()).run([ref_map["t"]], feeds)
    np.testing.assert_allclose(got[mapping["t"]], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["then", "else"])
def test_if_on_a_run_time_condition_differentiates_each_branch(sign):
    """Both branches read the parameters; the condition (the sign of the input's sum) picks one at
    run time: the gradient If computes that branch's gradient."""
    model = models.if_branches()
    params = _params(model)
    model, values = initializers_as_inputs(model, params)
    rng = np.random.default_rng(6)
    x = np.abs(rng.standard_normal((2, 3))) * sign
    feeds = {"x": x, **{k: v.astype(np.float64) for k, v in values.items()}}
    check_gradients(model, feeds, [*params, "x"])
    grad = build_gradient(model, vjp=True, wrt=[*params, "x"])
    assert [n.op_type for n in grad.graph].count("If") == 2


def test_a_refusal_names_the_node_and_the_path():
    """Resize scales computed at run time cannot be differentiated through; the error says which
    node and how it lies between the wrt value and the output."""
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 1, 2, 2] x, float[4] s) => (float[1, 1, 4, 4] z) <float w = {2.0}> {
        y = Mul(x, w)
        scales = Abs(s)
        r = Resize<mode="nearest">(y, , scales)
        z = Sigmoid(r)
    }
    """
    model = onnx.parser.parse_model(text)
    model.graph.node[2].name = "upsample"
    with pytest.raises(GradientError) as err:
        build_gradient(model, vjp=True, wrt=["w"])
    message = str(err.value)
    assert "needs constant scales ('scales' is computed at run time)" in message
    assert "(node 'upsample') on the path w -> Mul -> Resize(upsample) -> Sigmoid -> z" in message


def test_float64_cross_entropy_gradient_runs_on_onnxruntime_cpu():
    """onnxruntime has no float64 OneHot: the loss gradient builds it in float32 and casts."""
    model = to_float64(models.mlp((5, 4, 3)))
    grad = build_gradient(model, loss_fn="cross_entropy", output="logits").to_proto()
    rng = np.random.default_rng(7)
    feeds = {"x": rng.standard_normal((6, 5)), "target": rng.integers(0, 3, 6).astype(np.int64)}
    names = [o.name for o in grad.graph.output]
    got = create_session(grad.SerializeToString()).run(None, feeds)
    expected = ReferenceEvaluator(grad).run(None, feeds)
    for name, a, e in zip(names, got, expected):
        assert a.dtype == np.float64, name
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12, err_msg=name)


def test_onnxruntime_symbolic_inference_recovers_a_lost_rank():
    """The shared shape resolution asks onnxruntime's symbolic inference where onnx loses a rank."""
    import onnxgraph
    from onnxgraph import types
    from onnxgraph.shape_inference import inferred_types

    model = onnxgraph.from_proto(models.vit_squeeze_chain())
    assert types.shape_of(inferred_types(model).get("lifted")) is None
    assert types.shape_of(inferred_types(model, symbolic_fallback=True)["lifted"])[1:] == (1, 4)


@pytest.mark.parametrize(
    "body",
    [
        'y = DepthToSpace<blocksize=2, mode="DCR">(x)',
        'y = DepthToSpace<blocksize=2, mode="CRD">(x)',
        "y = SpaceToDepth<blocksize=2>(x)",
    ],
)
def test_depth_space_regroups_over_run_time_dims(body):
    """Pixel shuffles with symbolic channels and spatial sizes."""
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[batch, c, h, w] x) => (float[batch, d, p, q] y) {{
        {body}
    }}
    """
    rng = np.random.default_rng(8)
    check_gradients(onnx.parser.parse_model(text), {"x": rng.standard_normal((2, 8, 4, 6))}, ["x"])


@pytest.mark.parametrize(
    "body",
    [
        "y = AveragePool<kernel_shape=[3, 2], strides=[2, 1], pads=[1, 0, 1, 1]>(x)",
        "y = AveragePool<kernel_shape=[2, 2], strides=[2, 2], count_include_pad=1, pads=[1, 1, 0, 0]>(x)",
        "y = MaxPool<kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]>(x)",
        'y = Conv<kernel_shape=[3, 2], auto_pad="SAME_UPPER">(x, w)',
        "y = Conv<kernel_shape=[3, 2], strides=[2, 3], dilations=[1, 2], pads=[0, 1, 2, 0]>(x, w)",
        "y = ConvTranspose<kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 0, 1], output_padding=[1, 2]>(x, w)",
    ],
)
def test_window_ops_with_every_dim_symbolic(body):
    """Nothing but the rank known: channels folded into the batch or taken from the weight."""
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[n, c, h, w_] x, float[3, 3, 3, 2] w) => (float[n, d, p, q] y) {{
        {body}
    }}
    """
    model = onnx.parser.parse_model(text)
    rng = np.random.default_rng(9)
    feeds = {"x": rng.standard_normal((2, 3, 7, 8)), "w": rng.standard_normal((3, 3, 3, 2))}
    wrt = ["x", "w"] if "Conv" in body else ["x"]
    if "Conv" not in body:  # w unused
        model.graph.input.pop()
        del feeds["w"]
    check_gradients(model, feeds, wrt, coords_per_input=10)


@pytest.mark.parametrize(
    ("attrs", "scales"),
    [
        ('mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"', "1, 1, 2, 3"),
        ('mode="nearest"', "1, 1, 3, 2"),
    ],
)
def test_nearest_upsampling_over_run_time_sizes(attrs, scales):
    """``F.interpolate(scale_factor=k)`` on images of any size: each cell's gradient sums its block."""
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[n, c, h, w] x) => (float[n, c, p, q] y) {{
        s = Constant<value=float[4] {{{scales}}}>()
        y = Resize<{attrs}>(x, , s)
    }}
    """
    rng = np.random.default_rng(10)
    model = onnx.parser.parse_model(text)
    for shape in [(2, 3, 4, 5), (1, 2, 3, 2)]:
        check_gradients(model, {"x": rng.standard_normal(shape)}, ["x"], coords_per_input=10)


@pytest.mark.parametrize(
    ("signature", "body", "shapes"),
    [
        (  # Conv weight gradient as one Gemm
            "float[n, 3, 5, 5] x, float[8, 3, 3, 3] w",
            "y = Conv<strides=[2, 2], pads=[1, 1, 0, 0]>(x, w)",
            {"x": (2, 3, 5, 5), "w": (8, 3, 3, 3)},
        ),
        (  # Conv weight gradient as per-image MatMuls, grouped
            "float[n, 4, 4, 5] x, float[4, 2, 3, 3] w",
            "y = Conv<group=2, dilations=[1, 2], pads=[1, 2, 1, 2]>(x, w)",
            {"x": (2, 4, 4, 5), "w": (4, 2, 3, 3)},
        ),
        (  # Conv weight gradient as the batch-as-channels Conv
            "float[n, 2, 6, 6] x, float[2, 2, 5, 5] w",
            "y = Conv<pads=[2, 2, 1, 1]>(x, w)",
            {"x": (2, 2, 6, 6), "w": (2, 2, 5, 5)},
        ),
        (  # training-mode BatchNormalization: the per-channel count read at run time
            "float[n, 3, 2, 3] x, float[3] w",
            "y, rm, rv = BatchNormalization<training_mode=1>(x, w, w, m, v)",
            {"x": (2, 3, 2, 3), "w": (3,)},
        ),
    ],
)
def test_backward_forms_with_a_symbolic_batch(signature, body, shapes):
    """The cheaper backward forms (rules/conv.py, rules/normalization.py) over a batch known only at run time."""
    text = f"""
    <ir_version: 8, opset_import: ["" : 17]>
    g ({signature}) => (float[n, d, p, q] y) <float[3] m = {{0.1, -0.2, 0.3}}, float[3] v = {{1.0, 0.5, 2.0}}> {{
        {body}
    }}
    """
    rng = np.random.default_rng(10)
    feeds = {
        name: rng.uniform(0.5, 1.5, shape) if name == "w" and len(shape) == 1 else rng.standard_normal(shape)
        for name, shape in shapes.items()
    }
    check_gradients(onnx.parser.parse_model(text), feeds, list(shapes), coords_per_input=10)
