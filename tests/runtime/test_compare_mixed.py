"""Comparing a half-precision model's outputs with its float32 original."""

from __future__ import annotations

import numpy as np

from onnxgraph.runtime.compare import compare_arrays, compare_outputs, default_tolerance


def test_float16_against_float32_uses_the_float16_tolerance():
    expected = np.linspace(-3, 3, 101, dtype=np.float32)
    actual = expected.astype(np.float16)  # rounding error up to ~1e-3, far beyond float32's 1e-4
    strict = compare_arrays("y", expected, actual.astype(np.float32))
    mixed = compare_arrays("y", expected, actual, mixed_floats=True)
    assert not strict.passed and strict.mismatches > 0
    assert mixed.passed and (mixed.rtol, mixed.atol) == default_tolerance(np.float16)
    assert mixed.max_abs == np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max()


def test_mixed_floats_still_catches_wrong_values_and_only_applies_to_floats():
    expected = np.ones(10, np.float32)
    actual = np.ones(10, np.float16)
    actual[3] = 1.5
    result = compare_outputs({"y": expected}, {"y": actual}, mixed_floats=True)[0]
    assert result.mismatches == 1 and result.max_abs == 0.5
    ints = compare_arrays("i", np.ones(3, np.int64), np.ones(3, np.int32), mixed_floats=True)
    assert not ints.passed and "dtype" in ints.note


def test_without_mixed_floats_a_dtype_change_fails():
    result = compare_arrays("y", np.ones(3, np.float32), np.ones(3, np.float16))
    assert not result.passed and "dtype" in result.note
