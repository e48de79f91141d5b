"""Latency statistics: percentile summaries and a bootstrap confidence interval for a ratio of medians."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = (50, 90, 95, 99)
BOOTSTRAP_RESAMPLES = 2000
MIN_BOOTSTRAP_RESAMPLES = 200
_BOOTSTRAP_BUDGET = 100_000_000  # resampled runs in all: about 2 s; long runs get fewer resamples
_MAX_RESAMPLE_ELEMENTS = 4_000_000  # resampled runs held in memory at once


def summarize_latencies(samples_ms: Sequence[float]) -> dict[str, float]:
    """``min``, ``mean``, ``p50``, ``p90``, ``p95``, ``p99`` and ``max`` of latencies in milliseconds.

    Percentiles interpolate linearly between the two nearest runs (numpy's default).
    """
    values = np.asarray(samples_ms, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no latency samples")
    summary = {"min": float(values.min()), "mean": float(values.mean())}
    summary.update({f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES})
    summary["max"] = float(values.max())
    return summary


def ratio_of_medians_ci(
    a_ms: Sequence[float],
    b_ms: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int | None = None,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``median(b) / median(a)`` with a paired percentile-bootstrap confidence interval.

    Runs ``a[i]`` and ``b[i]`` were taken back to back, so each resample draws run indices with
    replacement and keeps the pairs together: drift that slowed both runs of a pair stays shared.

    Args:
        a_ms: latencies of the baseline, one per run.
        b_ms: latencies of the candidate, the same number of runs as ``a_ms``.
        confidence: the interval's coverage, 0.95 for the 2.5th to 97.5th percentile of the resamples.
        resamples: how many bootstrap resamples to draw; by default :data:`BOOTSTRAP_RESAMPLES`,
            fewer (down to :data:`MIN_BOOTSTRAP_RESAMPLES`) beyond 50,000 runs to bound the time.
        seed: seed of the resampling, so the same runs give the same interval.

    Returns:
        ``(ratio, low, high)``.
    """
    a, b = np.asarray(a_ms, dtype=np.float64), np.asarray(b_ms, dtype=np.float64)
    if a.size == 0 or a.shape != b.shape:
        raise ValueError("need the same, non-zero number of runs for both models")
    if resamples is None:
        resamples = min(BOOTSTRAP_RESAMPLES, max(MIN_BOOTSTRAP_RESAMPLES, _BOOTSTRAP_BUDGET // a.size))
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_RESAMPLE_ELEMENTS // a.size)
    ratios = []
    for start in range(0, resamples, chunk):
        index = rng.integers(0, a.size, size=(min(chunk, resamples - start), a.size))
        ratios.append(np.median(b[index], axis=1) / np.median(a[index], axis=1))
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(ratios), [tail, 100 - tail])
    return float(np.median(b) / np.median(a)), float(low), float(high)
