"""A PNG of the latency distributions of a benchmark (matplotlib, installed with ``onnxgraph[plot]``)."""

from __future__ import annotations

import os

import numpy as np

from onnxgraph.errors import PlotError
from onnxgraph.fsutil import atomic_write
from onnxgraph.runtime.benchmark import BenchReport

_COLORS = ("tab:blue", "tab:orange")


def require_matplotlib() -> None:
    """Raise PlotError with the install command when matplotlib is missing (check before a long run)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'onnxgraph[plot]'") from None


def plot_latencies(report: BenchReport, path: str | os.PathLike) -> None:
    """Write a PNG with a histogram of each model's counted latencies and their run-by-run trace.

    Args:
        report: a benchmark of one or two models.
        path: the PNG to write (atomically).

    Raises:
        PlotError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    histogram, trace = figure.subplots(1, 2, width_ratios=(3, 2))
    every = np.concatenate([m.latencies_ms for m in report.models])
    bins = np.linspace(every.min(), np.percentile(every, 99.5), 50) if every.min() < every.max() else 10
    for model, color, tag in zip(report.models, _COLORS, "AB"):
        name = f"{tag}: {os.path.basename(model.path)}"
        p50 = model.latency["p50"]
        histogram.hist(
            model.latencies_ms,
            bins=bins,
            alpha=0.55,
            color=color,
            label=f"{name} (p50 {p50:.3g} ms)",
        )
        histogram.axvline(p50, color=color, linestyle="--", linewidth=1)
        trace.plot(model.latencies_ms, color=color, linewidth=0.8, label=name)
    histogram.set(xlabel="latency (ms), up to the 99.5th percentile", ylabel="runs", title=_title(report))
    histogram.legend(fontsize="small")
    trace.set(xlabel="counted run", ylabel="latency (ms)", title="run by run (drift shows here)")
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=110)


def _title(report: BenchReport) -> str:
    provider = report.models[0].provider.removesuffix("ExecutionProvider")
    if report.ratio_p50 is None:
        return f"latency on {provider}"
    ratio, low, high = report.ratio_p50
    return f"latency on {provider}: B/A p50 = {ratio:.3f} (95% CI {low:.3f}-{high:.3f})"
