"""Checking a converted model against the original on seeded random inputs.

The original runs on onnxruntime in this process; the converted model runs on onnxruntime in a
child process (:mod:`onnxgraph.runtime.isolated`), so a crash of onnxruntime on the new model is a
failed verification with a reason, not a dead command. onnx.reference stands in only when
onnxruntime cannot run the original either.

Half-precision results are judged against each output's overall scale, not element by element:
float16 rounds every intermediate to about 3 significant digits, so outputs near zero carry errors
that are large relative to themselves but tiny relative to the output. The measure is the relative
L2 error ``||converted - original|| / ||original||``, limited by :data:`HALF_TOLERANCE` unless the
caller gives another limit.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.errors import VerificationUnavailable, one_line
from onnxgraph.model import Model
from onnxgraph.runtime.compare import OutputComparison, compare_outputs
from onnxgraph.runtime.inputs import random_inputs, specs_of

_ORT_MAX_IR = 10
"""IR version used to run the *original* model (IR changes no semantics; onnxruntime may refuse a
newer stamp)."""

HALF_TOLERANCE: dict[int, float] = {onnx.TensorProto.FLOAT16: 1e-2, onnx.TensorProto.BFLOAT16: 4e-2}
"""Default limit on an output's relative L2 error after conversion to that element type: about
ten units in the last place of float16 (2**-10) and five of bfloat16 (2**-7)."""


@dataclass
class ScaleComparison:
    """How far one half-precision output is from the original, relative to the output's scale.

    Attributes:
        name: the output.
        relative_l2: ``||actual - expected|| / ||expected||`` (0 when both are zero).
        max_abs: the largest absolute difference.
        max_reference: ``max |expected|``.
        limit: the largest ``relative_l2`` accepted.
        note: a reason the output cannot be judged by scale (new NaN or infinity, shape change).
    """

    name: str
    relative_l2: float
    max_abs: float
    max_reference: float
    limit: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.note and self.relative_l2 <= self.limit

    @property
    def max_abs_over_scale(self) -> float:
        """``max_abs / max |expected|``: the worst element's error as a share of the output's range."""
        return self.max_abs / self.max_reference if self.max_reference else (0.0 if not self.max_abs else math.inf)

    def describe(self) -> str:
        """One line: how far off the output is."""
        if self.note:
            return f"output '{self.name}': {self.note}"
        return (
            f"output '{self.name}' is {self.relative_l2:.2%} off the original (relative L2 error; "
            f"limit {self.limit:.2%}), worst element {self.max_abs:.3g} = {self.max_abs_over_scale:.2%} "
            f"of max |output|"
        )


def compare_scaled(name: str, expected: np.ndarray, actual: np.ndarray, limit: float) -> ScaleComparison:
    """Compare a half-precision result with its float original by the output's overall scale."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return ScaleComparison(name, math.inf, math.inf, 0.0, limit, f"shape {actual.shape} != {expected.shape}")
    e, a = expected.astype(np.float64), actual.astype(np.float64)
    finite = np.isfinite(e)
    if np.any(finite & ~np.isfinite(a)):
        count = int(np.count_nonzero(finite & ~np.isfinite(a)))
        return ScaleComparison(
            name,
            math.inf,
            math.inf,
            0.0,
            limit,
            f"{count} value(s) became NaN or infinite (overflow in half precision)",
        )
    if np.any(~finite & (e != a) & ~(np.isnan(e) & np.isnan(a))):
        return ScaleComparison(name, math.inf, math.inf, 0.0, limit, "a NaN or infinity of the original changed")
    e, a = np.where(finite, e, 0.0), np.where(finite, a, 0.0)
    diff = np.abs(a - e)
    norm = float(np.linalg.norm(e))
    error = float(np.linalg.norm(diff))
    relative = error / norm if norm else (0.0 if error == 0 else math.inf)
    return ScaleComparison(name, relative, float(diff.max(initial=0.0)), float(np.abs(e).max(initial=0.0)), limit)


@dataclass
class Verification:
    """The outcome of running both models."""

    comparisons: list[OutputComparison | ScaleComparison] = field(default_factory=list)
    engine: str = ""
    """What ran the converted model: "onnxruntime" or "onnx.reference"."""
    error: str = ""
    """Why the converted model could not be run (empty when it ran)."""
    note: str = ""
    """What had to be done to run it (a retry with an onnxruntime optimizer disabled)."""

    @property
    def passed(self) -> bool:
        return not self.error and all(c.passed for c in self.comparisons)

    @property
    def ran_on_onnxruntime(self) -> bool:
        """The converted model loaded and ran on onnxruntime."""
        return self.engine == "onnxruntime" and not self.error


def _runnable(model: Model, ir_cap: int | None) -> onnx.ModelProto:
    proto = model.to_proto()
    if ir_cap is not None:
        proto.ir_version = min(proto.ir_version, ir_cap)
    return proto


def _reference(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    names = [o.name for o in proto.graph.output]
    return dict(zip(names, ReferenceEvaluator(proto).run(None, dict(feeds))))


def _expected(original: Model, feeds: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    """The original's outputs and what computed them; VerificationUnavailable when nothing can."""
    from onnxgraph.runtime.sessions import RunBudgetExceeded, run_model

    proto = _runnable(original, _ORT_MAX_IR)
    try:
        return run_model(proto, dict(feeds)), "onnxruntime"  # optimizations off: reference values only
    except Exception as ort_error:  # noqa: BLE001 - onnxruntime raises its own exception types
        if isinstance(ort_error, RunBudgetExceeded):  # onnx.reference would take longer still
            raise VerificationUnavailable(f"the original model {ort_error}") from ort_error
        try:
            return _reference(proto, feeds), "onnx.reference"
        except Exception:  # noqa: BLE001 - the reference evaluator raises anything
            raise VerificationUnavailable(
                f"the original model does not run on onnxruntime: {one_line(ort_error)}"
            ) from ort_error


OPTIMIZED_SESSION_SECONDS = 60.0
"""How long the converted model's fully optimized onnxruntime session may take to create and run
before verification falls back to a session without onnxruntime's optimizations (which are
superlinear), and how long that one may take in turn before the verification fails. onnxruntime's
CPU provider needs minutes even without optimizations for a 50,000-node float16 chain: it inserts a
Cast to float32 for each float16 initializer, and those Casts can all run side by side, which makes
its session creation quadratic (13 CPU s for a 10,000-Add chain against 0.9 s in float32)."""


def _run_converted_isolated(converted: Model, feeds: Mapping[str, np.ndarray]):
    """Run the converted model in a child process, as users' sessions do (all optimizations) when that
    fits :data:`OPTIMIZED_SESSION_SECONDS`, else with onnxruntime's optimizations off (noted)."""
    from onnxgraph.runtime.isolated import run_isolated
    from onnxgraph.runtime.sessions import run_budget
    from onnxgraph.serde.fileio import save

    with tempfile.TemporaryDirectory(prefix="onnxgraph-verify-") as folder:
        path = os.path.join(folder, "converted.onnx")
        save(converted, path)
        limit = min(OPTIMIZED_SESSION_SECONDS, run_budget())
        run = run_isolated(path, feeds, timeout=limit)
        if not run.timed_out:
            return run
        plain = run_isolated(path, feeds, optimization="disable", timeout=limit)
        if plain.timed_out:
            plain.error = (
                f"onnxruntime did not create and run a session within {limit:g} s, with or without its "
                "graph optimizations (its session creation grows quadratically with the number of nodes that "
                "can run side by side, and its CPU provider adds one such Cast per float16 initializer)"
            )
            return plain
        plain.note = "; ".join(
            filter(
                None,
                [
                    f"onnxruntime's optimized session took over {limit:g} s: verified with its graph optimizations off",
                    plain.note,
                ],
            )
        )
        return plain


def verify_conversion(
    original: Model,
    converted: Model,
    *,
    half_type: int | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    tolerance: float | None = None,
) -> Verification:
    """Run both models on the same seeded inputs and compare every output.

    The converted model runs on onnxruntime. When onnxruntime runs the original, the converted
    model must run there too (a failure, or a crash of onnxruntime, fails the verification);
    onnx.reference stands in only for models onnxruntime cannot run, original and converted alike.

    Args:
        original: the model before conversion.
        converted: the model to check.
        half_type: the half-precision element type the converted model computes in, if any: its
            float outputs are then judged by relative L2 error (see :func:`compare_scaled`).
        input_shapes: sizes for dynamic inputs.
        seed: seed of the random inputs.
        tolerance: the relative L2 limit for half precision (default :data:`HALF_TOLERANCE`).

    Raises:
        VerificationUnavailable: the original runs on neither engine.
    """
    feeds = random_inputs(specs_of(original), shapes=input_shapes, seed=seed)
    converted_feeds = {}
    for spec in specs_of(converted):
        array = feeds[spec.name]
        converted_feeds[spec.name] = array.astype(types.np_dtype(spec.elem_type)) if array.dtype.kind == "f" else array
    expected, engine = _expected(original, feeds)
    run = _run_converted_isolated(converted, converted_feeds)
    if run.outputs is not None:
        return Verification(_compare(expected, run.outputs, half_type, tolerance), "onnxruntime", note=run.note)
    note = ""
    if run.missing_kernel:
        note = f"onnxruntime's CPU provider cannot run the converted model ({run.error}): compared on onnx.reference"
    elif engine == "onnxruntime":
        return Verification(engine=engine, error=f"the converted model does not run on onnxruntime: {run.error}")
    try:
        actual = _reference(_runnable(converted, None), converted_feeds)
    except Exception as exc:  # noqa: BLE001 - the reference evaluator raises anything
        from onnxgraph.errors import one_line

        return Verification(
            engine="onnx.reference",
            error=f"the converted model runs neither on onnxruntime ({run.error}) nor on "
            f"onnx.reference ({one_line(exc)})",
        )
    return Verification(_compare(expected, actual, half_type, tolerance), "onnx.reference", note=note)


def _compare(expected: dict, actual: dict, half_type: int | None, tolerance: float | None) -> list:
    comparisons: list[OutputComparison | ScaleComparison] = []
    exact = {}
    for name, exp in expected.items():
        act = actual.get(name)
        if half_type is not None and act is not None and exp.dtype.kind == "f":
            limit = HALF_TOLERANCE[half_type] if tolerance is None else tolerance
            comparisons.append(compare_scaled(name, exp, act, limit))
        else:
            exact[name] = exp
    comparisons.extend(compare_outputs(exact, actual, mixed_floats=True))
    return comparisons
