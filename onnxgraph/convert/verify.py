"""Checking a converted model against the original on seeded random inputs.

Both the original and the converted model run on onnxruntime in child processes
(:mod:`onnxgraph.runtime.isolated`, stopped at a time budget; graphs of many nodes run in chunks), so
a crash of onnxruntime on the new model is a failed verification with a reason, not a dead command.
onnx.reference stands in only when onnxruntime cannot run the original either.

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
from onnxgraph.runtime.inputs import specs_of
from onnxgraph.runtime.sizing import run_sized

_ORT_MAX_IR = 10
"""IR version used to run the *original* model (IR changes no semantics; onnxruntime may refuse a
newer stamp)."""

HALF_TOLERANCE: dict[int, float] = {onnx.TensorProto.FLOAT16: 1e-2, onnx.TensorProto.BFLOAT16: 4e-2}
"""Default limit on an output's relative L2 error after conversion to that element type: about
ten units in the last place of float16 (2**-10) and five of bfloat16 (2**-7)."""

HALF_SMALLEST_NORMAL: dict[int, float] = {
    onnx.TensorProto.FLOAT16: float(np.finfo(np.float16).smallest_normal),
    onnx.TensorProto.BFLOAT16: float(np.finfo(np.float32).smallest_normal),  # float32's exponent range
}
"""The smallest normal number of each half type: below it values keep fewer bits, then flush to zero."""


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
        smallest_normal: the half type's smallest normal number (0 when not known); an output whose
            largest value lies below it is out of the half type's range, see :attr:`underflows`.
    """

    name: str
    relative_l2: float
    max_abs: float
    max_reference: float
    limit: float
    note: str = ""
    smallest_normal: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.note and self.relative_l2 <= self.limit

    @property
    def max_abs_over_scale(self) -> float:
        """``max_abs / max |expected|``: the worst element's error as a share of the output's range."""
        return self.max_abs / self.max_reference if self.max_reference else (0.0 if not self.max_abs else math.inf)

    @property
    def underflows(self) -> bool:
        """The whole output is smaller than the half type's normal numbers: a failure is then the type's
        range (values rounded to few bits or flushed to zero), not its precision."""
        return not self.note and 0 < self.max_reference < self.smallest_normal

    def describe(self) -> str:
        """One line: how far off the output is."""
        if self.note:
            return f"output '{self.name}': {self.note}"
        text = (
            f"output '{self.name}' is {self.relative_l2:.2%} off the original (relative L2 error; "
            f"limit {self.limit:.2%}), worst element {self.max_abs:.3g} = {self.max_abs_over_scale:.2%} "
            f"of max |output|"
        )
        if self.underflows:
            text += (
                f"; its largest value {self.max_reference:.3g} is below the smallest normal half-precision "
                f"number {self.smallest_normal:.3g}: the values underflow"
            )
        return text


def compare_scaled(
    name: str, expected: np.ndarray, actual: np.ndarray, limit: float, half_type: int | None = None
) -> ScaleComparison:
    """Compare a half-precision result with its float original by the output's overall scale.

    ``half_type`` (the element type computed in) lets the result say when the output lies below that
    type's normal range (:attr:`ScaleComparison.underflows`).
    """
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
    smallest = HALF_SMALLEST_NORMAL.get(half_type, 0.0) if half_type is not None else 0.0
    return ScaleComparison(
        name, relative, float(diff.max(initial=0.0)), float(np.abs(e).max(initial=0.0)), limit, "", smallest
    )


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


@dataclass
class Reference:
    """The original model's outputs on seeded inputs: what the converted model is checked against.

    Attributes:
        feeds: the inputs (dynamic dimensions sized by :func:`onnxgraph.runtime.sizing.run_sized`).
        expected: output name -> array.
        engine: what computed them: "onnxruntime" or "onnx.reference".
    """

    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    engine: str


def _run_on_onnxruntime(original: Model, source, input_shapes, seed: int) -> tuple[dict, dict]:
    """Feeds and outputs of the original on onnxruntime, in a child process within the check's time
    budget (:func:`onnxgraph.runtime.isolated.run_bounded`): from ``source`` when it runs, else from
    the IR (its IR version capped; external data outside the folder)."""
    from onnxgraph.runtime.isolated import run_bounded
    from onnxgraph.runtime.sessions import RunBudgetExceeded

    if source is not None:
        try:
            return run_sized(original, lambda f: run_bounded(source, f), input_shapes=input_shapes, seed=seed)
        except RunBudgetExceeded:
            raise
        except Exception:  # noqa: BLE001 - a newer IR stamp, external data outside the folder: run the IR
            pass
    capped = min(original.ir_version, _ORT_MAX_IR) or None

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_bounded(original, feeds, ir_version=capped)

    return run_sized(original, run, input_shapes=input_shapes, seed=seed)


def reference_outputs(
    original: Model,
    *,
    source: str | os.PathLike | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> Reference:
    """Run the original model on seeded inputs, before conversion replaces its weights.

    onnxruntime runs it in a child process from its file ``source`` when given and loadable, else from
    a temporary copy of the IR, with onnxruntime's optimizations and pre-packing off (reference values
    only); the child is gone when this returns, so its session never sits beside the converted weights. onnx.reference
    stands in when onnxruntime cannot run the original.

    Raises:
        VerificationUnavailable: the original runs on neither engine (or exceeds the run budget).
    """
    from onnxgraph.runtime.memory import release_freed_memory
    from onnxgraph.runtime.sessions import RunBudgetExceeded

    try:
        feeds, expected = _run_on_onnxruntime(original, source, input_shapes, seed)
        return Reference(feeds, expected, "onnxruntime")
    except RunBudgetExceeded as exc:  # onnx.reference would take longer still
        raise VerificationUnavailable(f"the original model was not run: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        ort_error = exc
    finally:
        release_freed_memory()  # the session's buffers, before the converted weights take their place
    proto = _runnable(original, None)
    try:
        feeds, expected = run_sized(original, lambda f: _reference(proto, f), input_shapes=input_shapes, seed=seed)
    except Exception:  # noqa: BLE001 - the reference evaluator raises anything
        raise VerificationUnavailable(
            f"the original model does not run on onnxruntime: {one_line(ort_error)}"
        ) from ort_error
    return Reference(feeds, expected, "onnx.reference")


OPTIMIZED_SESSION_SECONDS = 60.0
"""How long the converted model's fully optimized onnxruntime session may take to create and run
before verification falls back to a session without onnxruntime's optimizations (which are
superlinear); that one may take the check's budget (``written.check_seconds()``) before the
verification fails. onnxruntime's CPU provider inserts a Cast to float32 for each float16
initializer, and those Casts can all run side by side, which makes its session creation quadratic
(13 CPU s for a 10,000-Add chain against 0.9 s in float32); graphs of many nodes therefore run in
chunks (:mod:`onnxgraph.runtime.chunked`), whose time grows with the graph's size."""


def _run_converted_isolated(converted: Model, feeds: Mapping[str, np.ndarray]):
    """Run the converted model in a child process, as users' sessions do (all optimizations) when that
    fits :data:`OPTIMIZED_SESSION_SECONDS`, else with onnxruntime's optimizations off (noted)."""
    from onnxgraph.runtime.isolated import run_isolated
    from onnxgraph.runtime.sessions import run_budget
    from onnxgraph.runtime.written import check_seconds
    from onnxgraph.serde.fileio import save

    with tempfile.TemporaryDirectory(prefix="onnxgraph-verify-") as folder:
        path = os.path.join(folder, "converted.onnx")
        save(converted, path, external_data="auto")  # streamed, never one protobuf of all the weights
        limit = min(OPTIMIZED_SESSION_SECONDS, run_budget())
        run = run_isolated(path, feeds, timeout=limit)
        if not run.timed_out:
            return run
        plain = run_isolated(path, feeds, optimization="disable", timeout=check_seconds())
        if plain.timed_out:
            plain.error = (
                f"onnxruntime did not create and run a session within {limit:g} s with its graph optimizations, "
                f"nor within {check_seconds():g} s without them (its session creation grows quadratically with the "
                "number of nodes that can run side by side, and its CPU provider adds one such Cast per float16 "
                "initializer)"
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
    original: Model | Reference,
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
        original: the model before conversion, or its outputs computed by :func:`reference_outputs`
            before converting (which keeps the original's session apart from the converted weights).
        converted: the model to check.
        half_type: the half-precision element type the converted model computes in, if any: its
            float outputs are then judged by relative L2 error (see :func:`compare_scaled`).
        input_shapes: sizes for dynamic inputs (when ``original`` is a model).
        seed: seed of the random inputs (when ``original`` is a model).
        tolerance: the relative L2 limit for half precision (default :data:`HALF_TOLERANCE`).

    Raises:
        VerificationUnavailable: the original runs on neither engine.
    """
    reference = (
        original
        if isinstance(original, Reference)
        else reference_outputs(original, input_shapes=input_shapes, seed=seed)
    )
    expected, engine = reference.expected, reference.engine
    converted_feeds = {}
    for spec in specs_of(converted):
        array = reference.feeds[spec.name]
        converted_feeds[spec.name] = array.astype(types.np_dtype(spec.elem_type)) if array.dtype.kind == "f" else array
    run = _run_converted_isolated(converted, converted_feeds)
    if run.outputs is not None:
        comparisons = _compare(expected, run.outputs, half_type, tolerance)
        return Verification(comparisons, "onnxruntime", note=_join(run.note, _all_zero_note(comparisons)))
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
    comparisons = _compare(expected, actual, half_type, tolerance)
    return Verification(comparisons, "onnx.reference", note=_join(note, _all_zero_note(comparisons)))


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _all_zero_note(comparisons: Sequence[OutputComparison | ScaleComparison]) -> str:
    """Say when a half-precision output was zero throughout in the original: matching it proves little
    (a randomly initialised torchvision ViT's head is zero-initialised)."""
    zero = [c.name for c in comparisons if isinstance(c, ScaleComparison) and not c.note and c.max_reference == 0]
    if not zero:
        return ""
    names = ", ".join(f"'{n}'" for n in zero)
    return f"output {names} is all zeros in the original on these inputs: its match says little"


def _compare(expected: dict, actual: dict, half_type: int | None, tolerance: float | None) -> list:
    comparisons: list[OutputComparison | ScaleComparison] = []
    exact = {}
    for name, exp in expected.items():
        act = actual.get(name)
        if half_type is not None and act is not None and exp.dtype.kind == "f":
            limit = HALF_TOLERANCE[half_type] if tolerance is None else tolerance
            comparisons.append(compare_scaled(name, exp, act, limit, half_type))
        else:
            exact[name] = exp
    comparisons.extend(compare_outputs(exact, actual, mixed_floats=True))
    return comparisons
