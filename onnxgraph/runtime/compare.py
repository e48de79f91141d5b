"""Comparing model outputs with tolerances that depend on the dtype."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

_TOLERANCES: dict[str, tuple[float, float]] = {
    # dtype name -> (rtol, atol)
    "float64": (1e-7, 1e-9),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (3e-2, 1e-2),
}
_LOW_PRECISION = (1e-1, 1e-1)  # float8 and float4 variants


def default_tolerance(dtype: np.dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for outputs of ``dtype``: tight for float32, looser for half precision, exact otherwise."""
    dtype = np.dtype(dtype)
    if dtype.name in _TOLERANCES:
        return _TOLERANCES[dtype.name]
    if dtype.kind == "V" or "float8" in dtype.name or "float4" in dtype.name:
        return _LOW_PRECISION
    return (0.0, 0.0)


@dataclass
class OutputComparison:
    """How one output of two runs differs."""

    name: str
    max_abs: float
    max_rel: float
    mismatches: int
    size: int
    rtol: float
    atol: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.mismatches == 0 and not self.note

    def to_dict(self) -> dict:
        """The comparison as JSON-shaped data (its floats may be infinite or NaN:
        ``onnxgraph.cli.output.write_json`` writes those as text)."""
        return {**dataclasses.asdict(self), "passed": self.passed}


def compare_arrays(
    name: str,
    expected: np.ndarray,
    actual: np.ndarray,
    tolerance: tuple[float, float] | None = None,
    *,
    mixed_floats: bool = False,
) -> OutputComparison:
    """Compare two arrays elementwise; NaNs match NaNs and infinities match the same infinity.

    Args:
        name: the output's name, for the report.
        expected: the reference values.
        actual: the values to check.
        tolerance: ``(rtol, atol)``; by default :func:`default_tolerance` of the dtype.
        mixed_floats: accept floats of different precision (say a float16 model against its float32
            original): values are compared in float64 and the default tolerance is the looser dtype's.
    """
    expected, actual = np.asarray(expected), np.asarray(actual)
    cross = mixed_floats and expected.dtype != actual.dtype and _is_float(expected) and _is_float(actual)
    if tolerance is None:
        tolerance = default_tolerance(expected.dtype)
        if cross:
            looser = default_tolerance(actual.dtype)
            tolerance = (max(tolerance[0], looser[0]), max(tolerance[1], looser[1]))
    rtol, atol = tolerance
    if expected.shape != actual.shape or (expected.dtype != actual.dtype and not cross):
        note = f"shape/dtype {actual.shape}/{actual.dtype} != expected {expected.shape}/{expected.dtype}"
        return OutputComparison(name, float("inf"), float("inf"), expected.size, expected.size, rtol, atol, note)
    if expected.dtype.kind in "OUSb" or (expected.dtype.kind in "iu" and rtol == atol == 0):
        mismatches = int(np.count_nonzero(expected != actual))
        differs = float(mismatches > 0)
        return OutputComparison(name, differs, differs, mismatches, expected.size, rtol, atol)
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    both_nan = np.isnan(e) & np.isnan(a)
    same_inf = np.isinf(e) & (e == a)
    diff = np.where(both_nan | same_inf, 0.0, np.abs(a - e))
    diff = np.where(np.isnan(diff), np.inf, diff)
    rel = diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    bad = diff > atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
    return OutputComparison(
        name,
        float(diff.max(initial=0.0)),
        float(np.where(diff == 0, 0.0, rel).max(initial=0.0)),
        int(np.count_nonzero(bad)),
        expected.size,
        rtol,
        atol,
    )


def compare_outputs(
    expected: dict[str, np.ndarray],
    actual: dict[str, np.ndarray],
    tolerances: dict[str, tuple[float, float]] | None = None,
    *,
    mixed_floats: bool = False,
) -> list[OutputComparison]:
    """Compare every output of ``expected`` with the same-named output of ``actual``.

    ``tolerances`` maps output names to ``(rtol, atol)``; ``mixed_floats`` as in :func:`compare_arrays`.
    """
    tolerances = tolerances or {}
    results = []
    for name, exp in expected.items():
        if name not in actual:
            size = int(np.size(exp))
            results.append(OutputComparison(name, float("inf"), float("inf"), size, size, 0, 0, "missing"))
            continue
        results.append(compare_arrays(name, exp, actual[name], tolerances.get(name), mixed_floats=mixed_floats))
    return results


def _is_float(array: np.ndarray) -> bool:
    return array.dtype.name in _TOLERANCES


_HALF_TYPES = {"FLOAT16": "float16", "BFLOAT16": "bfloat16"}


def half_precision_of(model) -> np.dtype | None:
    """The half-precision float type an IR model computes in (bfloat16 over float16), or None.

    A model converted to float16 with float32 inputs and outputs still computes in float16: its
    float32 outputs deserve float16's tolerance, not float32's.
    """
    import onnx

    from onnxgraph import types

    half = {getattr(onnx.TensorProto, name) for name in _HALF_TYPES}
    found = {v.const_value.elem_type for g in model.all_graphs() for v in g.initializers.values()} & half
    found |= {n.attr("to") for n in model.all_nodes() if n.op_type == "Cast"} & half
    if not found:
        return None
    return types.np_dtype(max(found))  # BFLOAT16 (16) sorts after FLOAT16 (10): the looser one
