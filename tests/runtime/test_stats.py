"""Latency summaries and the paired bootstrap interval of a ratio of medians."""

from __future__ import annotations

import numpy as np
import pytest

from onnxgraph.runtime.stats import ratio_of_medians_ci, summarize_latencies


def test_summary_matches_the_definitions_on_1_to_100():
    summary = summarize_latencies(range(100, 0, -1))
    # Linear interpolation between order statistics: p50 of 1..100 is 50.5, p90 is 90.1, p99 is 99.01.
    assert summary["min"] == 1 and summary["max"] == 100
    assert summary["mean"] == pytest.approx(50.5)
    assert summary["p50"] == pytest.approx(50.5)
    assert summary["p90"] == pytest.approx(90.1)
    assert summary["p95"] == pytest.approx(95.05)
    assert summary["p99"] == pytest.approx(99.01)


def test_summary_of_skewed_samples_is_ordered():
    samples = np.random.default_rng(1).lognormal(0, 1, size=500)
    s = summarize_latencies(samples)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"]
    assert s["min"] <= s["mean"] <= s["max"]


def test_summary_needs_samples():
    with pytest.raises(ValueError):
        summarize_latencies([])


def test_exact_ratio_has_a_zero_width_interval():
    a = np.random.default_rng(2).uniform(1, 2, size=50)
    assert ratio_of_medians_ci(a, 2 * a) == pytest.approx((2.0, 2.0, 2.0))


def test_interval_covers_the_true_ratio_and_shrinks_with_more_runs():
    rng = np.random.default_rng(3)

    def width(n):
        drift = np.linspace(1.0, 3.0, n)  # the machine slows down; both models feel it
        a = drift * rng.lognormal(0, 0.1, size=n)
        b = 0.8 * drift * rng.lognormal(0, 0.1, size=n)
        ratio, low, high = ratio_of_medians_ci(a, b)
        assert low <= ratio <= high
        assert low < 0.8 < high
        return high - low

    assert width(2000) < width(50)


def test_pairing_keeps_shared_drift_out_of_the_interval():
    # B is exactly 10% faster in every pair, but the runs themselves vary fivefold.
    a = np.random.default_rng(4).uniform(1, 5, size=200)
    _, low, high = ratio_of_medians_ci(a, 0.9 * a)
    assert high - low < 1e-12


def test_same_seed_same_interval_and_mismatched_runs_rejected():
    a, b = np.arange(1, 31.0), np.arange(2, 32.0)
    assert ratio_of_medians_ci(a, b, seed=7) == ratio_of_medians_ci(a, b, seed=7)
    with pytest.raises(ValueError):
        ratio_of_medians_ci(a, b[:-1])
