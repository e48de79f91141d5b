"""A PNG of a run's loss curve from its metrics log (matplotlib, installed with ``onnxgraph[plot]``)."""

from __future__ import annotations

import json
import os

from onnxgraph.fsutil import atomic_write
from onnxgraph.runtime.plot import require_matplotlib


def plot_losses(metrics: str | os.PathLike, path: str | os.PathLike) -> None:
    """Draw the training loss per step (and the eval loss per epoch) of a ``metrics.jsonl`` file.

    Raises:
        PlotError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with open(metrics) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    if train:
        axes.plot(*zip(*train), linewidth=0.8, label="training loss")
    if evals:
        axes.plot(*zip(*evals), marker="o", label="eval loss (end of epoch)")
    axes.set(xlabel="step", ylabel="loss", title=os.path.basename(os.path.dirname(os.path.abspath(metrics))))
    axes.legend()
    with atomic_write(path) as f:
        figure.savefig(f, format="png", dpi=110)
