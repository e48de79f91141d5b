"""Timed runs of one session, with and without IO binding."""

from __future__ import annotations

import numpy as np
import onnx.parser
import pytest
from onnx.reference import ReferenceEvaluator

from onnxgraph.runtime.runner import TimedSession
from onnxgraph.runtime.sessions import create_session

MODEL = onnx.parser.parse_model(
    """<ir_version: 8, opset_import: ["" : 17]>
    g (float[N,8] x, int64[N] ids) => (float[N,8] y, int64[N] z) { y = Tanh(x)  z = Add(ids, ids) }"""
)
FEEDS = {
    "x": np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32),
    "ids": np.arange(3),
}


@pytest.mark.parametrize("io_binding", [False, True])
def test_outputs_match_the_reference_evaluator(io_binding):
    runner = TimedSession(create_session(MODEL), FEEDS, io_binding=io_binding)
    elapsed = runner.run()
    assert elapsed > 0
    y, z = ReferenceEvaluator(MODEL).run(None, FEEDS)
    outputs = runner.outputs()
    assert list(outputs) == ["y", "z"]
    np.testing.assert_allclose(outputs["y"], y, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(outputs["z"], z)


def test_outputs_before_a_run_is_a_programming_error():
    with pytest.raises(RuntimeError):
        TimedSession(create_session(MODEL), FEEDS).outputs()
