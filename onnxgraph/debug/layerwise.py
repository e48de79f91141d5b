"""Layer-wise comparison: run two models (or one model on two providers) on the same inputs, compare
every matched intermediate value, and find where the results first part ways."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from onnxgraph import renames
from onnxgraph.debug.exposure import DEFAULT_CHUNK_BYTES, Exposer, intermediates
from onnxgraph.debug.matching import Match, match_values
from onnxgraph.model import Model
from onnxgraph.runtime.compare import OutputComparison, compare_arrays, default_tolerance, half_precision_of
from onnxgraph.runtime.inputs import adapt_feeds, specs_of

Progress = Callable[[int, int], None]
"""Called with (values compared so far, values to compare)."""
_NODE_DATA_FLOOR = -12.0
_NODE_DATA_CEILING = 6.0


@dataclass
class ValueDiff:
    """How one matched value differs between A and B.

    Attributes:
        match: the pair of values (names, producing nodes and op types in both models).
        comparison: max abs / relative error and mismatch count against the tolerance.
        origin: the value fails while every matched value it is computed from passes: the place where
            the error jumps past the tolerance.
        output: the value is a graph output of A.
    """

    match: Match
    comparison: OutputComparison
    origin: bool = False
    output: bool = False

    def to_json(self) -> dict:
        c = self.comparison
        return {
            "name": self.match.a.name, "name_b": self.match.b.name,
            "node_a": self.match.a.node, "op_a": self.match.a.op_type,
            "node_b": self.match.b.node, "op_b": self.match.b.op_type,
            "max_abs": _finite_or_text(c.max_abs), "max_rel": _finite_or_text(c.max_rel),
            "mismatches": c.mismatches, "size": c.size, "rtol": c.rtol, "atol": c.atol, "note": c.note,
            "passed": c.passed, "origin": self.origin, "output": self.output,
        }


@dataclass
class LayerwiseReport:
    """The result of :func:`compare_layerwise`.

    Attributes:
        values: one entry per matched value, in A's topological order.
        unmatched: A's values with no partner in B.
        total: A's intermediate values considered.
    """

    values: list[ValueDiff] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    total: int = 0

    @property
    def outputs(self) -> list[ValueDiff]:
        return [v for v in self.values if v.output]

    @property
    def origins(self) -> list[ValueDiff]:
        return [v for v in self.values if v.origin]

    @property
    def passed(self) -> bool:
        """Every compared graph output is within tolerance."""
        return all(v.comparison.passed for v in self.outputs)

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "compared": len(self.values), "unmatched": len(self.unmatched), "total": self.total,
            "origins": [v.to_json() for v in self.origins],
            "outputs": [v.to_json() for v in self.outputs],
            "values": [v.to_json() for v in self.values],
        }

    def node_data(self) -> dict:
        """Per-node figures in the form ``viz --node-data`` reads: log10 of the largest abs error of the
        node's outputs, under both models' node names (or the output's name for an unnamed node)."""
        figures: dict[str, float] = {}
        for v in self.values:
            error = v.comparison.max_abs
            figure = _NODE_DATA_CEILING if not math.isfinite(error) else math.log10(max(error, 10**_NODE_DATA_FLOOR))
            figure = min(figure, _NODE_DATA_CEILING)
            for key in (v.match.a.node or v.match.a.name, v.match.b.node or v.match.b.name):
                figures[key] = max(figures.get(key, _NODE_DATA_FLOOR), figure)
        return {"label": "log10 max abs error", "values": figures}


def compare_layerwise(
    a: Model,
    b: Model | None,
    feeds: Mapping[str, np.ndarray],
    *,
    providers_a: tuple[str, ...] = ("CPUExecutionProvider",),
    providers_b: tuple[str, ...] = ("CPUExecutionProvider",),
    tolerance: tuple[float, float] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    on_progress: Progress | None = None,
) -> LayerwiseReport:
    """Compare every intermediate value of A with its partner in B on the same inputs.

    Args:
        a: the reference model.
        b: the model to check; None compares A with itself on ``providers_b``.
        feeds: inputs for A (B gets them cast to its float precision where it differs).
        providers_a: onnxruntime providers for A.
        providers_b: onnxruntime providers for B.
        tolerance: ``(rtol, atol)`` for every value; by default per dtype, as ``bench`` compares outputs
            (the looser one when a model computes in half precision).
        chunk_bytes: budget for the values one session exposes at a time.
        on_progress: called as chunks finish.

    Returns:
        The report; ``report.passed`` says whether the graph outputs agree.

    Raises:
        InputError: B's inputs do not fit the feeds.
    """
    b_model = a if b is None else b
    b_feeds = dict(feeds) if b is None else adapt_feeds(feeds, specs_of(b_model))
    a_values, b_values = intermediates(a), intermediates(b_model)
    pairs = match_values(a_values, b_values, renames.read(a), renames.read(b_model))
    report = LayerwiseReport(total=len(a_values))
    matched = {p.a.name for p in pairs}
    report.unmatched = [v.name for v in a_values if v.name not in matched]
    half = half_precision_of(a) or half_precision_of(b_model)
    outputs = {o.name for o in a.graph.outputs}
    by_a = {p.a.name: p for p in pairs}
    run_a = Exposer(a, providers_a, chunk_bytes=chunk_bytes)
    run_b = Exposer(b_model, providers_b, chunk_bytes=chunk_bytes)
    done = 0
    for chunk in run_a.plan(feeds, [p.a.name for p in pairs]):
        got_a = run_a.run_chunk(feeds, chunk)
        got_b = run_b.run_chunk(b_feeds, [by_a[n].b.name for n in chunk])
        for name in chunk:
            pair = by_a[name]
            if name not in got_a or pair.b.name not in got_b:
                continue
            expected, actual = got_a.pop(name), got_b[pair.b.name]
            comparison = compare_arrays(name, expected, actual, tolerance or _tolerance(expected, actual, half),
                                        mixed_floats=True)
            report.values.append(ValueDiff(pair, comparison, output=name in outputs))
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, len(pairs))
        del got_a, got_b
    _mark_origins(a, report)
    return report


def _tolerance(expected: np.ndarray, actual: np.ndarray, half) -> tuple[float, float]:
    tolerance = tuple(map(max, default_tolerance(expected.dtype), default_tolerance(actual.dtype)))
    if half is not None and expected.dtype.kind == "f":
        tolerance = tuple(map(max, tolerance, default_tolerance(half)))
    return tolerance


def _mark_origins(a: Model, report: LayerwiseReport) -> None:
    """Mark the failing values whose nearest compared ancestors all pass.

    Walks A in topological order carrying a "bad" flag per value: a compared value is bad when it
    fails; any other value is bad when anything its producer reads is. Graph inputs are the same in
    both runs; a changed weight shows at the first node that reads it.
    """
    by_name = {v.match.a.name: v for v in report.values}
    bad: set[str] = set()
    for node in a.graph.topological_order():
        reads = [v for v in node.inputs if v is not None] + node.implicit_inputs()
        tainted = any(v.name in bad for v in reads)
        for value in node.outputs:
            diff = by_name.get(value.name)
            if diff is None:
                if tainted:
                    bad.add(value.name)
                continue
            if not diff.comparison.passed:
                bad.add(value.name)
                diff.origin = not tainted


def _finite_or_text(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)
