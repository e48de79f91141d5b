"""Sizes for dynamic dimensions: derived from a conv front end's receptive field, checked on onnxruntime."""

from __future__ import annotations

import model_builders
import numpy as np
import onnx.parser
import pytest

import onnxgraph
from onnxgraph.runtime.sessions import create_session
from onnxgraph.runtime.sizing import SizingFailed, min_spatial_length, run_sized, size_plans

AUDIO = model_builders.audio_frontend()


def _runs(proto: onnx.ModelProto, samples: int) -> bool:
    session = create_session(proto.SerializeToString(), optimization="disable")
    wav = np.random.default_rng(0).standard_normal((2, samples)).astype(np.float32)
    try:
        session.run(None, {"wav": wav})
    except Exception:  # noqa: BLE001 - onnxruntime's own exception types
        return False
    return True


def test_derived_length_runs_where_the_default_sizes_do_not():
    """Back from one output frame: MaxPool k2/s2 needs 2, AveragePool k3/s2/p1 3, ConvTranspose
    k4/s2/p1 2, Conv k3/s2/p1 3, Conv k5/s3 11 samples (10 leaves MaxPool an empty output by ONNX's
    floor rule; onnxruntime rounds towards zero and runs from 5)."""
    length = min_spatial_length(onnxgraph.load(AUDIO))
    assert length == 11
    assert _runs(AUDIO, length) and not _runs(AUDIO, 2) and not _runs(AUDIO, 1)


def test_models_without_windowed_ops_need_no_length():
    model = onnxgraph.load(
        onnx.parser.parse_model(
            '<ir_version: 8, opset_import: ["" : 17]> g (float[n] x) => (float[n] y) { y = Relu(x) }'
        )
    )
    assert min_spatial_length(model) == 1
    assert [plan.named for plan in size_plans(model, [])] == [{}, {}]


def test_plans_try_the_derived_length_on_the_last_axis_first():
    model = onnxgraph.load(AUDIO)
    from onnxgraph.runtime.inputs import specs_of

    plans = [(plan.named, plan.default) for plan in size_plans(model, specs_of(model))]
    assert plans == [({}, 2), ({}, 1), ({"time": 11}, 2), ({"batch": 11}, 2), ({}, 11)]


def test_run_sized_reuses_one_runner_and_returns_the_first_sizes_that_run():
    model = onnxgraph.load(AUDIO)
    session = create_session(AUDIO.SerializeToString(), optimization="disable")
    shapes = []

    def run(feeds):
        shapes.append(feeds["wav"].shape)
        return session.run(None, feeds)

    feeds, outputs = run_sized(model, run)
    assert shapes == [(2, 2), (1, 1), (2, 11)]
    assert feeds["wav"].shape == (2, 11) and outputs[0].shape[0] == 2


def test_a_model_no_size_fits_names_input_shape():
    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[n] x) => (float[4, 4] y) <int64[2] s = {4, 4}> {
        y = Reshape(x, s)
    }"""
    model = onnxgraph.load(onnx.parser.parse_model(text))
    session = create_session(onnx.parser.parse_model(text).SerializeToString(), optimization="disable")
    with pytest.raises(SizingFailed, match=r"sizes 2, 1; give sizes that fit with --input-shape"):
        run_sized(model, lambda feeds: session.run(None, feeds))
    feeds, _ = run_sized(model, lambda feeds: session.run(None, feeds), input_shapes={"x": [16]})
    assert feeds["x"].shape == (16,)
