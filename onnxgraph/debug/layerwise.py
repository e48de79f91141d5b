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
        comparison: max abs / relative error and the elements off the tolerance.
        ratio: the max abs error over ``atol + rtol * max|A's value|``: above 1 the value has diverged.
            Scaled by the whole tensor, so rounding noise on elements near zero does not count.
        origin: the value has diverged while every compared value it is computed from has not: the
            place where the error jumps past the tolerance.
        output: the value is a graph output of A.
    """

    match: Match
    comparison: OutputComparison
    ratio: float
    origin: bool = False
    output: bool = False

    @property
    def diverged(self) -> bool:
        return not self.ratio <= 1.0

    def to_json(self) -> dict:
        return {
            **self.comparison.to_dict(),
            "name": self.match.a.name,
            "name_b": self.match.b.name,
            "node_a": self.match.a.node,
            "op_a": self.match.a.op_type,
            "node_b": self.match.b.node,
            "op_b": self.match.b.op_type,
            "ratio": self.ratio,
            "diverged": self.diverged,
            "origin": self.origin,
            "output": self.output,
        }


@dataclass
class LayerwiseReport:
    """The result of :func:`compare_layerwise`.

    Attributes:
        outputs: the graph outputs of plain runs (no value exposed, onnxruntime optimizing as usual),
            compared elementwise as ``bench`` compares them.
        values: one entry per matched intermediate value, in A's topological order.
        unmatched: A's values with no partner in B.
        total: A's intermediate values considered.
    """

    outputs: list[OutputComparison] = field(default_factory=list)
    values: list[ValueDiff] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    total: int = 0

    @property
    def origins(self) -> list[ValueDiff]:
        """The values where the error jumps past the tolerance, in topological order."""
        return [v for v in self.values if v.origin]

    @property
    def passed(self) -> bool:
        """Every graph output is within tolerance."""
        return all(c.passed for c in self.outputs)

    def worst(self, count: int = 3) -> list[ValueDiff]:
        """The values with the largest error ratio (where to look when no single origin stands out)."""
        return sorted(self.values, key=lambda v: -v.ratio if not math.isnan(v.ratio) else -math.inf)[:count]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "compared": len(self.values),
            "unmatched": len(self.unmatched),
            "total": self.total,
            "outputs": [c.to_dict() for c in self.outputs],
            "origins": [v.to_json() for v in self.origins],
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
    labels: tuple[str, str] = ("A", "B"),
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
        labels: how errors name A and B (their paths).

    Returns:
        The report; ``report.passed`` says whether the graph outputs agree.

    Raises:
        InputError: B's inputs do not fit the feeds.
        RunError: onnxruntime cannot run A or B.
    """
    b_model = a if b is None else b
    b_feeds = dict(feeds) if b is None else adapt_feeds(feeds, specs_of(b_model))
    half = half_precision_of(a) or half_precision_of(b_model)
    run_a = Exposer(a, providers_a, chunk_bytes=chunk_bytes, label=labels[0])
    run_b = Exposer(b_model, providers_b, chunk_bytes=chunk_bytes, label=labels[1])
    report = LayerwiseReport(
        outputs=_compare_outputs(run_a.run_plain(feeds), run_b.run_plain(b_feeds), tolerance, half)
    )
    a_values, b_values = intermediates(a), intermediates(b_model, initializers=True)
    pairs = match_values(a_values, b_values, renames.read(a), renames.read(b_model))
    report.total = len(a_values)
    matched = {p.a.name for p in pairs}
    report.unmatched = [v.name for v in a_values if v.name not in matched]
    outputs = {o.name for o in a.graph.outputs}
    by_a = {p.a.name: p for p in pairs}
    done = 0
    for chunk in run_a.plan(feeds, [p.a.name for p in pairs]):
        got_a = run_a.run_chunk(feeds, chunk)
        got_b = run_b.run_chunk(b_feeds, [by_a[n].b.name for n in chunk])
        for name in chunk:
            pair = by_a[name]
            if name not in got_a or pair.b.name not in got_b:
                continue
            expected, actual = got_a.pop(name), got_b[pair.b.name]
            rtol, atol = tolerance or value_tolerance(half, expected.dtype, actual.dtype)
            comparison = compare_arrays(name, expected, actual, (rtol, atol), mixed_floats=True)
            ratio = error_ratio(comparison, expected, rtol, atol)
            report.values.append(ValueDiff(pair, comparison, ratio, output=name in outputs))
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, len(pairs))
        del got_a, got_b
    _mark_origins(a, report)
    return report


def _compare_outputs(
    got_a: dict[str, np.ndarray], got_b: dict[str, np.ndarray], tolerance, half
) -> list[OutputComparison]:
    """The graph outputs of A and B (by A's output names, else by position), elementwise as ``bench`` does."""
    names_a, names_b = list(got_a), list(got_b)
    by_b = dict(got_b)
    if not set(names_a) <= set(by_b) and len(names_a) == len(names_b):
        by_b = dict(zip(names_a, got_b.values()))
    comparisons = []
    for name, expected in got_a.items():
        if name not in by_b:
            size = int(np.size(expected))
            comparisons.append(OutputComparison(name, math.inf, math.inf, size, size, 0, 0, "missing in B"))
            continue
        actual = by_b[name]
        comparisons.append(
            compare_arrays(
                name,
                expected,
                actual,
                tolerance or value_tolerance(half, expected.dtype, actual.dtype),
                mixed_floats=True,
            )
        )
    return comparisons


def error_ratio(comparison: OutputComparison, expected: np.ndarray, rtol: float, atol: float) -> float:
    """Max abs error over ``atol + rtol * max|expected|`` (infinite for a shape/dtype mismatch or an exact
    dtype that differs); above 1 the value has diverged."""
    if comparison.note:
        return math.inf
    if comparison.max_abs == 0:
        return 0.0
    if expected.dtype.kind not in "fc" or expected.size == 0:
        return math.inf
    finite = np.abs(expected[np.isfinite(expected)].astype(np.float64))
    scale = float(finite.max(initial=0.0))
    bound = atol + rtol * scale
    return comparison.max_abs / bound if bound > 0 else math.inf


def value_tolerance(half: np.dtype | None, *dtypes: np.dtype) -> tuple[float, float]:
    """``(rtol, atol)``: the loosest default of ``dtypes``, and for floats of a model that computes in half
    precision (``half``, from :func:`~onnxgraph.runtime.compare.half_precision_of`) at least the half type's."""
    floors = [default_tolerance(dtype) for dtype in dtypes]
    if half is not None and np.dtype(dtypes[0]).kind == "f":
        floors.append(default_tolerance(half))
    return max((rtol for rtol, _ in floors), default=0.0), max((atol for _, atol in floors), default=0.0)


def _mark_origins(a: Model, report: LayerwiseReport) -> None:
    """Mark the diverged values whose nearest compared ancestors have not diverged.

    Walks A in topological order carrying a "bad" flag per value: a compared value is bad when it
    diverged; any other value is bad when anything its producer reads is. Graph inputs are the same in
    both runs; a changed weight shows at the first node that reads it.
    """
    by_name = {v.match.a.name: v for v in report.values}
    bad: set[str] = set()
    for node in a.graph.topological_order():
        reads = [v for v in node.inputs if v is not None] + node.implicit_inputs()
        tainted = any(v.name in bad for v in reads)
        for value in node.outputs:
            name = value.name
            if not name:  # an omitted optional output
                continue
            diff = by_name.get(name)
            if diff is None:
                if tainted:
                    bad.add(name)
                continue
            if diff.diverged:
                bad.add(name)
                diff.origin = not tainted
