"""Random compositions of differentiable ops against finite differences, and the regressions the
fuzzing found; plus checks that the default cleanup never folds or merges the ``wrt`` parameters.

A bigger sweep by hand: ``FUZZ_SEEDS=2000 FUZZ_STEPS=10 pytest -q tests/autodiff/test_fuzz.py``.
Known onnxruntime 1.31 bug such a sweep can meet: at its basic optimization level,
``Transpose -> Pad (with an axes input) -> Transpose`` fails with "Gather indices out of data
bounds" (e.g. pads {2,0,2,1}, axes {2,1} on a [2,1,4] value); with optimizations disabled the model
runs and matches the float64 reference.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from fuzz_graphs import random_graph
from gradcheck import check_gradients, finite_differences, to_float64
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator
from reference_ops import NEW_OPS
from test_models import initializers_as_inputs

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.autodiff.errors import GradientError
from onnxgraph.runtime.sessions import create_session

FD = {"eps": 1e-5, "fd_tol": (1e-4, 1e-5)}
"""A larger step than the table's: products of many terms make large objectives, whose rounding
error divided by a 1e-6 step alone reaches 1e-4."""
SEEDS = int(os.environ.get("FUZZ_SEEDS", "150"))
STEPS = int(os.environ.get("FUZZ_STEPS", "10"))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_composition_matches_finite_differences(seed):
    model, feeds, wrt = random_graph(seed, STEPS)
    check_gradients(model, feeds, wrt, seed=seed, coords_per_input=6, **FD)


def _model(text: str) -> onnx.ModelProto:
    return onnx.parser.parse_model(text)


@pytest.mark.parametrize(
    "body",
    [
        "y = Max(x, x)",
        "y = Min(x, x, x)",
        "t = Expand(x, shape)\n y = Max(x, t)",  # ties across a broadcast
        "t = Tile(x, reps)\n y = Min(t, x)",
    ],
)
def test_min_max_ties_share_the_gradient(body):
    """Max(x, x) is x: tied inputs must split the gradient, not each take all of it."""
    text = f"""
    <ir_version: 10, opset_import: ["" : 18]>
    g (float[2, 3] x) => (float[2, 3] y)
    <int64[2] shape = {{1, 3}}, int64[2] reps = {{1, 1}}> {{
        {body}
    }}
    """
    feeds = {"x": np.random.default_rng(0).uniform(-1, 1, (2, 3))}
    check_gradients(_model(text), feeds, ["x"])


TWIN_PARAMS = """
<ir_version: 10, opset_import: ["" : 18]>
g (float[2, 3] x) => (float[2, 3] y)
<float[3] a = {0.5, -1.0, 2.0}, float[3] b = {0.5, -1.0, 2.0}> {
    xa = Mul(x, a)
    t = Tanh(xa)
    xb = Mul(x, b)
    s = Sigmoid(xb)
    u = Mul(t, a)
    y = Add(u, s)
}
"""


def _mapping(grad) -> dict[str, str]:
    return json.loads(grad.metadata_props[METADATA_KEY])


def _expected_twin_gradients(x, a, b):
    """d sum(y) / da and / db of TWIN_PARAMS, by hand."""
    t = np.tanh(x * a)
    s = 1 / (1 + np.exp(-x * b))
    da = (t + a * (1 - t**2) * x).sum(axis=0)
    db = (s * (1 - s) * x).sum(axis=0)
    return da, db


def test_identical_parameters_keep_separate_gradients():
    """CSE must not merge two parameters that happen to hold the same values: each is trained
    apart, and fed different values later."""
    grad = build_gradient(_model(TWIN_PARAMS), loss_fn="sum", wrt=["a", "b"])
    mapping = _mapping(grad)
    proto, params = initializers_as_inputs(grad.to_proto(), ["a", "b"])
    assert set(params) == {"a", "b"}, "a parameter was folded or merged away"
    session = create_session(proto.SerializeToString())
    x = np.random.default_rng(1).uniform(-1, 1, (2, 3)).astype(np.float32)
    new = {
        "a": np.array([1.5, 0.25, -0.5], np.float32),
        "b": np.array([-2.0, 0.75, 1.0], np.float32),
    }
    for values in (params, new):
        da, db = session.run([mapping["a"], mapping["b"]], {"x": x, **values})
        want_a, want_b = _expected_twin_gradients(x.astype(np.float64), values["a"], values["b"])
        np.testing.assert_allclose(da, want_a, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(db, want_b, rtol=1e-5, atol=1e-6)


def _as_initializers(model: onnx.ModelProto, feeds: dict, names: list[str]) -> onnx.ModelProto:
    """The model with these graph inputs turned into float32 initializers holding their feeds."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    kept = [i for i in model.graph.input if i.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(numpy_helper.from_array(feeds[n].astype(np.float32), n) for n in names)
    return model


def _with_twins(feeds: dict, wrt: list[str]) -> dict:
    """Parameters of one shape start equal, and scalar ones equal the graph's ``shared``
    constant (0.75): CSE must still keep every parameter apart."""
    feeds = dict(feeds)
    first: dict[tuple, str] = {}
    for name in wrt:
        shape = np.shape(feeds[name])
        if shape == ():
            feeds[name] = np.array(0.75)
        elif shape in first:
            feeds[name] = feeds[first[shape]].copy()
        else:
            first[shape] = name
    return feeds


@pytest.mark.parametrize("seed", range(0, SEEDS, 6))
def test_parameters_fed_after_training_steps_give_gradients_at_the_new_values(seed):
    """Random graphs whose parameters are initializers, some with equal values: the cleanup may
    neither fold anything computed from them nor merge them, so feeding new values (different
    for each) yields the gradient at those values."""
    model, feeds, wrt = random_graph(seed, STEPS)
    if not wrt:
        return
    feeds = _with_twins(feeds, wrt)
    output = model.graph.output[0].name
    grad = build_gradient(_as_initializers(model, feeds, wrt), loss_fn="sum", output=output, wrt=wrt)
    mapping = _mapping(grad)
    proto, _ = initializers_as_inputs(grad.to_proto(), wrt)
    rng = np.random.default_rng(seed)
    moved = {n: feeds[n] + rng.uniform(-0.3, 0.3, np.shape(feeds[n])) for n in wrt}
    moved_feeds = {**feeds, **moved}
    session = create_session(proto.SerializeToString())
    got = session.run(
        [mapping[n] for n in wrt],
        {i.name: np.asarray(moved_feeds[i.name], np.float32) for i in session.get_inputs()},
    )
    forward = ReferenceEvaluator(to_float64(model), new_ops=NEW_OPS)

    def objective(values):
        return float(np.sum(forward.run([output], values)[0]))

    for name, gradient in zip(wrt, got):
        numeric, picked = finite_differences(objective, moved_feeds, name, 1e-6, rng, 6)
        scale = max(1.0, float(np.max(np.abs(numeric))))
        np.testing.assert_allclose(gradient.reshape(-1)[picked], numeric, rtol=2e-3, atol=2e-3 * scale, err_msg=name)


@pytest.mark.parametrize(
    ("shape", "pads", "axes"),
    [
        ((1, 3), [0, 1, 2, 2], [-1, 0]),  # 2 + 1 cells wrapped around an axis of 1
        ((2, 3), [1, 4], [1]),  # 4 cells wrapped around an axis of 3
        ((2, 3), [0, 3, 0, 3], [0, 1]),  # exactly the axis: one fold still does
    ],
)
def test_wrap_padding_wider_than_the_axis(shape, pads, axes):
    """Static wrap padding used to be folded back once per side, so a strip wider than the axis
    lost the cells that wrapped around more than once."""
    out = list(shape)
    for k, axis in enumerate(axes):
        out[axis] += pads[k] + pads[k + len(axes)]
    text = f"""
    <ir_version: 10, opset_import: ["" : 21]>
    g (float[{",".join(map(str, shape))}] x) => (float[{",".join(map(str, out))}] y)
    <int64[{len(pads)}] pads = {{{",".join(map(str, pads))}}},
     int64[{len(axes)}] axes = {{{",".join(map(str, axes))}}}> {{
        y = Pad<mode="wrap">(x, pads, "", axes)
    }}
    """
    feeds = {"x": np.random.default_rng(0).uniform(-1, 1, shape)}
    check_gradients(_model(text), feeds, ["x"])


def test_unknown_rank_is_a_gradient_error():
    """No inference can tell the rank of a Reshape to a shape fed at run time (of unknown length);
    a rule needing it must refuse with a GradientError (one line, exit 2 on the command line), not
    a bare ValueError."""
    text = """
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[2] x, int64[n] s) => (float y) <int64 i = {1}> {
        r = Reshape(x, s)
        y = Gather<axis=0>(r, i)
    }
    """
    with pytest.raises(GradientError, match="rank of 'r' is unknown"):
        build_gradient(_model(text), vjp=True, wrt=["x"])
