"""Checking a converted model against the original on seeded random inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxgraph import types
from onnxgraph.errors import one_line
from onnxgraph.model import Model
from onnxgraph.runtime.compare import OutputComparison, compare_outputs, default_tolerance
from onnxgraph.runtime.inputs import random_inputs, specs_of

_ORT_MAX_IR = 10
"""IR version used to run the *original* model (IR changes no semantics; onnxruntime may refuse a
newer stamp)."""


@dataclass
class Verification:
    """The outcome of running both models."""

    comparisons: list[OutputComparison] = field(default_factory=list)
    engine: str = ""
    """What ran the converted model: "onnxruntime" or "onnx.reference"."""
    skipped: str = ""
    """Why nothing could be compared (empty when compared)."""

    @property
    def passed(self) -> bool:
        return not self.skipped and all(c.passed for c in self.comparisons)


def _run(proto: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], str]:
    from onnxgraph.runtime.sessions import create_session

    names = [o.name for o in proto.graph.output]
    try:
        session = create_session(proto)
    except Exception as ort_error:  # noqa: BLE001 - onnxruntime raises its own exception types
        from onnx.reference import ReferenceEvaluator

        try:
            outputs = ReferenceEvaluator(proto).run(None, feeds)
        except Exception as ref_error:  # noqa: BLE001
            raise RuntimeError(f"{one_line(ort_error)}; onnx.reference: {ref_error}") from ref_error
        return dict(zip(names, outputs)), "onnx.reference"
    return dict(zip(names, session.run(None, feeds))), "onnxruntime"


def _runnable(model: Model, ir_cap: int | None) -> onnx.ModelProto:
    proto = model.to_proto()
    if ir_cap is not None:
        proto.ir_version = min(proto.ir_version, ir_cap)
    return proto


def verify_conversion(
    original: Model,
    converted: Model,
    *,
    half_type: int | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> Verification:
    """Run both models on the same seeded inputs and compare every output.

    Tolerances follow the precision the converted model computes in (``half_type``, or each
    output's dtype); outputs are compared as float32 when the dtypes differ.
    """
    feeds = random_inputs(specs_of(original), shapes=input_shapes, seed=seed)
    converted_feeds = {}
    for spec in specs_of(converted):
        array = feeds[spec.name]
        converted_feeds[spec.name] = array.astype(types.np_dtype(spec.elem_type)) if array.dtype.kind == "f" else array
    try:
        expected, _ = _run(_runnable(original, _ORT_MAX_IR), feeds)
        actual, engine = _run(_runnable(converted, None), converted_feeds)
    except RuntimeError as exc:
        return Verification(skipped=f"cannot run: {exc}")
    tolerances = {}
    for name, exp in expected.items():
        act = actual.get(name)
        if act is not None and exp.dtype.kind == "f" and act.dtype != exp.dtype:
            actual[name] = act.astype(exp.dtype)
        if half_type is not None and exp.dtype.kind == "f":
            tolerances[name] = default_tolerance(types.np_dtype(half_type))
    return Verification(compare_outputs(expected, actual, tolerances), engine)
