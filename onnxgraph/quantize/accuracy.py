"""How far a quantized model's outputs are from the float model's: max abs error, cosine, top-1 agreement."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class OutputAccuracy:
    """One output compared over all samples.

    Attributes:
        name: the output.
        max_abs: largest absolute difference (inf when shapes or dtypes differ).
        cosine: cosine similarity of all the output's values, samples concatenated (None for
            outputs that are not floating point).
        top1: fraction of rows (all axes but the last) whose arg-max agrees, for classifier-like
            outputs (float, last dimension above 1); else None.
        near_ties: for the same outputs, the fraction of rows whose float gap between the two
            largest values is at most twice the largest change quantization made in that row: rows
            whose arg-max the error alone can flip, so top-1 agreement over them is luck (near 1 on
            an untrained classifier); else None.
        note: why the output could not be compared, if it could not.
    """

    name: str
    max_abs: float
    cosine: float | None
    top1: float | None = None
    near_ties: float | None = None
    note: str = ""


@dataclass
class AccuracyReport:
    """Every output of the quantized model against the float model, and the samples used."""

    outputs: list[OutputAccuracy]
    samples: int
    source: str
    """Where the samples came from: the calibration file, or ``"seeded random inputs"``."""

    @property
    def worst_cosine(self) -> float | None:
        """The lowest cosine over the float outputs (None when no output is a float)."""
        values = [o.cosine for o in self.outputs if o.cosine is not None]
        return min(values, default=None)

    def passes(self, min_cosine: float) -> bool:
        """True when every output could be compared and every float output reaches ``min_cosine``."""
        return all(
            not o.note and (o.cosine is None or (not math.isnan(o.cosine) and o.cosine >= min_cosine))
            for o in self.outputs
        )

    def describe_failure(self, min_cosine: float) -> str:
        """One line naming the outputs below ``min_cosine`` (or that could not be compared)."""
        bad = [
            f"'{o.name}' {o.note}" if o.note else f"'{o.name}' cosine {o.cosine:.4f}"
            for o in self.outputs
            if o.note or (o.cosine is not None and not o.cosine >= min_cosine)
        ]
        return f"accuracy below --min-cosine {min_cosine:g}: " + ", ".join(bad)


def measure_accuracy(
    expected: Sequence[dict[str, np.ndarray]], actual: Sequence[dict[str, np.ndarray]], source: str
) -> AccuracyReport:
    """Compare per-sample outputs of the float model (``expected``) and the quantized one (``actual``)."""
    names = list(expected[0]) if expected else []
    outputs = [_compare(name, [e[name] for e in expected], [a.get(name) for a in actual]) for name in names]
    return AccuracyReport(outputs, len(expected), source)


def _compare(name: str, expected: list[np.ndarray], actual: list[np.ndarray | None]) -> OutputAccuracy:
    present: list[np.ndarray] = []
    for e, a in zip(expected, actual):
        if a is None:
            return OutputAccuracy(name, math.inf, None, note="missing from the quantized model")
        if e.shape != a.shape or e.dtype != a.dtype:
            return OutputAccuracy(name, math.inf, None, note=f"{a.shape}/{a.dtype} != float {e.shape}/{e.dtype}")
        present.append(a)
    floats = expected[0].dtype.kind == "f"
    e = np.concatenate([x.reshape(-1) for x in expected]).astype(np.float64)
    a = np.concatenate([x.reshape(-1) for x in present]).astype(np.float64)
    max_abs = float(np.abs(a - e).max(initial=0.0))
    if not floats:
        return OutputAccuracy(name, max_abs, None)
    return OutputAccuracy(name, max_abs, _cosine(e, a), _top1(expected, present), _near_ties(expected, present))


def _cosine(e: np.ndarray, a: np.ndarray) -> float:
    """Cosine similarity; 1 for two all-zero vectors, 0 when only one is zero, NaN with NaNs."""
    ne, na = float(np.linalg.norm(e)), float(np.linalg.norm(a))
    if ne == 0 or na == 0:
        return 1.0 if ne == na else 0.0
    return float(np.dot(e, a) / (ne * na))


def _top1(expected: list[np.ndarray], actual: list[np.ndarray]) -> float | None:
    if expected[0].ndim == 0 or expected[0].shape[-1] < 2:
        return None
    hits = sum(int(np.count_nonzero(e.argmax(-1) == a.argmax(-1))) for e, a in zip(expected, actual))
    rows = sum(e.size // e.shape[-1] for e in expected)
    return hits / rows if rows else None


def _near_ties(expected: list[np.ndarray], actual: list[np.ndarray]) -> float | None:
    if expected[0].ndim == 0 or expected[0].shape[-1] < 2:
        return None
    e = np.concatenate([x.reshape(-1, x.shape[-1]) for x in expected]).astype(np.float64)
    a = np.concatenate([x.reshape(-1, x.shape[-1]) for x in actual]).astype(np.float64)
    if not len(e):
        return None
    top2 = np.partition(e, -2, axis=1)[:, -2:]
    gap = top2[:, 1] - top2[:, 0]
    return float(np.mean(gap <= 2 * np.abs(a - e).max(axis=1)))
