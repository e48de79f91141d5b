"""Every ONNX backend node test model round-trips through the IR losslessly.

For each case: import -> export; the result passes onnx.checker; it serializes to the same bytes as
the original (so nodes, inputs, outputs, initializers, functions and metadata are all equal); and
wherever onnxruntime CPU runs the original, the round-tripped model's outputs are bit-identical (the
cases onnxruntime cannot run are skipped with that reason: they compare no outputs).
"""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import create_session

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from onnx.backend.test.case.node import collect_testcases

    CASES = collect_testcases()

LIGHT_DIR = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
LIGHT_MODELS = sorted(glob.glob(os.path.join(LIGHT_DIR, "light_*.onnx")))


def _feeds(model: onnx.ModelProto, inputs: list) -> dict:
    initializers = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in initializers]
    return {
        name: onnx.numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else x for name, x in zip(names, inputs)
    }


def _run(model: onnx.ModelProto, feeds: dict) -> list | None:
    """Outputs from onnxruntime CPU, or None when onnxruntime cannot load or run the model."""
    try:
        return create_session(model, optimization="disable").run(None, feeds)
    except Exception:  # noqa: BLE001 - onnxruntime lacks many ops/types; such cases are skipped
        return None


def _assert_bit_identical(expected, actual) -> None:
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for e, a in zip(expected, actual):
            _assert_bit_identical(e, a)
        return
    if expected is None:
        assert actual is None
        return
    e, a = np.asarray(expected), np.asarray(actual)
    assert e.dtype == a.dtype and e.shape == a.shape
    if e.dtype.kind == "O":
        assert e.tolist() == a.tolist()
    else:
        assert e.tobytes() == a.tobytes()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case_round_trips_losslessly(case, counts):
    original = case.model
    exported = onnxgraph.from_proto(original).to_proto()

    onnx.checker.check_model(exported)
    assert exported == original
    assert exported.SerializeToString(deterministic=True) == original.SerializeToString(deterministic=True)
    counts["node cases round-tripped byte-identical and checker-clean"] += 1


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_node_case_round_trip_runs_bit_identically(case, counts):
    original = case.model
    feeds = _feeds(original, case.data_sets[0][0]) if case.data_sets else {}
    expected = _run(original, feeds)
    if expected is None:
        pytest.skip("onnxruntime CPU cannot run this case: no outputs to compare")
    actual = _run(onnxgraph.from_proto(original).to_proto(), feeds)
    assert actual is not None, "onnxruntime runs the original but not the round-tripped model"
    _assert_bit_identical(expected, actual)
    counts["node cases with bit-identical onnxruntime outputs"] += 1


@pytest.mark.parametrize("path", LIGHT_MODELS, ids=[os.path.basename(p) for p in LIGHT_MODELS])
def test_light_model_round_trips_through_a_file(path, tmp_path, counts):
    model = onnxgraph.load(path)
    out = tmp_path / "roundtrip.onnx"
    onnxgraph.save(model, out)

    original, saved = onnx.load(path), onnx.load(str(out))
    onnx.checker.check_model(saved)
    assert saved == original
    feeds = random_inputs(specs_of(model), seed=0)
    expected = create_session(path).run(None, feeds)
    actual = create_session(str(out)).run(None, feeds)
    _assert_bit_identical(expected, actual)
    counts["light models round-tripped with identical outputs"] += 1


def test_the_whole_backend_suite_was_collected():
    assert len(CASES) > 1500
    assert len(LIGHT_MODELS) == 9
