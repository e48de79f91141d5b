"""Input handling for benchmarks: --input-shape checks, .npz feeds, the same feeds for a second model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxgraph.runtime.inputs import (
    InputError,
    InputSpec,
    adapt_feeds,
    check_shapes,
    load_npz,
    random_inputs,
)

F32, F16, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64
SPECS = [InputSpec("x", F32, ("N", 4)), InputSpec("ids", I64, ("N",))]


def test_check_shapes_accepts_fitting_shapes():
    check_shapes(SPECS, {"x": [3, 4], "ids": [3]})


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"y": [1]}, "'y', which is not a model input \\(x, ids\\)"),
        ({"x": [3, 4, 1]}, "input 'x' has rank 2, --input-shape gives 3 dims"),
        ({"x": [3, 5]}, "input 'x' has fixed size 4 on axis 1, --input-shape gives 5"),
    ],
)
def test_check_shapes_names_the_problem(shapes, message):
    with pytest.raises(InputError, match=message):
        check_shapes(SPECS, shapes)


def test_load_npz_returns_the_arrays(tmp_path):
    x, ids = np.arange(8, dtype=np.float32).reshape(2, 4), np.array([1, 2], dtype=np.int64)
    np.savez(tmp_path / "in.npz", x=x, ids=ids)
    feeds = load_npz(tmp_path / "in.npz", SPECS)
    np.testing.assert_array_equal(feeds["x"], x)
    np.testing.assert_array_equal(feeds["ids"], ids)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((1, 4), np.float32)}, "lacks input 'ids'"),
        (
            {"x": np.zeros((1, 4), np.float32), "ids": np.zeros(1, np.int64), "z": np.zeros(1)},
            "has 'z', which is not",
        ),
        (
            {"x": np.zeros((1, 4), np.float64), "ids": np.zeros(1, np.int64)},
            "input 'x' is float64, the model expects float32",
        ),
    ],
)
def test_load_npz_rejects_files_that_do_not_fit(tmp_path, arrays, message):
    np.savez(tmp_path / "in.npz", **arrays)
    with pytest.raises(InputError, match=message):
        load_npz(tmp_path / "in.npz", SPECS)


def test_load_npz_missing_or_not_an_archive(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_npz(tmp_path / "nothing.npz", SPECS)
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(InputError, match="not a readable .npz archive"):
        load_npz(tmp_path / "bad.npz", SPECS)


def test_adapt_feeds_casts_floats_to_the_other_models_precision():
    feeds = {"x": np.full((2, 4), 1.0 / 3, np.float32), "ids": np.array([1, 2], np.int64)}
    adapted = adapt_feeds(feeds, [InputSpec("ids", I64, ("N",)), InputSpec("x", F16, ("N", 4))])
    assert adapted["x"].dtype == np.float16
    np.testing.assert_array_equal(adapted["x"], feeds["x"].astype(np.float16))
    assert adapted["ids"] is feeds["ids"]


def test_adapt_feeds_refuses_other_inputs():
    feeds = {"x": np.zeros((1, 4), np.float32)}
    with pytest.raises(InputError, match="the models' inputs differ"):
        adapt_feeds(feeds, [InputSpec("input", F32, None)])
    with pytest.raises(InputError, match="input 'x' is float32 in one model and int64 in the other"):
        adapt_feeds(feeds, [InputSpec("x", I64, None)])


def test_random_inputs_take_a_range_per_input():
    specs = [InputSpec("ids", I64, (1000,)), InputSpec("mask", I64, (1000,))]
    feeds = random_inputs(specs, int_range=(0, 30522), int_ranges={"mask": (0, 2)})
    assert set(np.unique(feeds["mask"])) == {0, 1}
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < 30522 and feeds["ids"].max() > 1000
