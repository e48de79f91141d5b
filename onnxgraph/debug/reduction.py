"""Reducing a failing model to a small one that still fails: cuts at single values, then delta debugging.

1. Output cut: the shortest prefix of the nodes (in topological order) that still fails, found by
   bisection; then only the nodes the prefix's last node depends on.
2. Input cut: the shortest suffix of what is left that still fails (earlier values become inputs).
3. ddmin (Zeller's delta debugging) over the remaining nodes: drop chunks, then complements, halving
   the chunk size until no single node can go.

Each candidate is a valid model (see :mod:`onnxgraph.debug.subgraph`); the check decides whether it
still fails. Every step is recorded, so the path taken can be printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxgraph.debug.checks import Check, Outcome
from onnxgraph.debug.subgraph import Cutter
from onnxgraph.errors import NotFailing


@dataclass
class Step:
    """One candidate tried: the phase, how many nodes it kept, and whether it still failed."""

    phase: str
    nodes: int
    failing: bool
    detail: str = ""


@dataclass
class ReduceResult:
    """The smallest failing model found and how it was found."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    original_nodes: int
    kept: list[int]
    steps: list[Step] = field(default_factory=list)
    seconds: float = 0.0
    check_seconds: float = 0.0
    failure: str = ""

    def to_json(self) -> dict:
        return {
            "original_nodes": self.original_nodes,
            "nodes": len(self.kept),
            "checks": len(self.steps),
            "seconds": round(self.seconds, 3),
            "check_seconds": round(self.check_seconds, 3),
            "failure": self.failure,
            "kept": [{"op_type": n.op_type, "name": n.name, "outputs": list(n.output)} for n in self.model.graph.node],
            "path": [vars(s) for s in self.steps],
        }


class _Search:
    def __init__(self, cutter: Cutter, check: Check, on_step: Callable[[Step], None] | None) -> None:
        self.cutter = cutter
        self.check = check
        self.on_step = on_step
        self.steps: list[Step] = []
        self.cache: dict[tuple[int, ...], bool] = {}
        self.check_seconds = 0.0

    def run(self, positions: Sequence[int], phase: str) -> Outcome:
        model, feeds = self.cutter.build(positions)
        start = time.perf_counter()
        outcome = self.check(model, feeds)
        self.check_seconds += time.perf_counter() - start
        step = Step(phase, len(positions), outcome.failing, outcome.detail)
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        return outcome

    def fails(self, positions: Sequence[int], phase: str) -> bool:
        key = tuple(positions)
        if not key:
            return False
        if key not in self.cache:
            self.cache[key] = self.run(key, phase).failing
        return self.cache[key]

    def output_cut(self, kept: list[int]) -> list[int]:
        low, high = 0, len(kept)  # kept[:high] fails; kept[:low] is not known to
        while high - low > 1:
            middle = (low + high) // 2
            if self.fails(kept[:middle], "output cut: prefix"):
                high = middle
            else:
                low = middle
        prefix = kept[:high]
        cone = self.cutter.ancestors(prefix, prefix[-1])
        if len(cone) < len(prefix) and self.fails(cone, "output cut: cone of the last node"):
            return cone
        return prefix

    def input_cut(self, kept: list[int]) -> list[int]:
        low, high = 0, len(kept) - 1  # kept[low:] fails; kept[high + 1:] is not known to
        while high > low:
            middle = (low + high + 1) // 2
            if self.fails(kept[middle:], "input cut: suffix"):
                low = middle
            else:
                high = middle - 1
        return kept[low:]

    def ddmin(self, kept: list[int]) -> list[int]:
        granularity = 2
        while len(kept) >= 2:
            size = -(-len(kept) // granularity)
            parts = [kept[i : i + size] for i in range(0, len(kept), size)]
            for part in parts:
                if self.fails(part, "ddmin: subset"):
                    kept, granularity = part, 2
                    break
            else:
                for part in parts:
                    dropped = set(part)
                    rest = [i for i in kept if i not in dropped]
                    if self.fails(rest, "ddmin: complement"):
                        kept, granularity = rest, max(granularity - 1, 2)
                        break
                else:
                    if granularity >= len(kept):
                        break
                    granularity = min(len(kept), granularity * 2)
        return kept


def reduce_model(
    model,
    check: Check,
    values: Mapping[str, np.ndarray],
    types_by_name: Mapping[str, onnx.TypeProto],
    *,
    seed: int = 0,
    on_step: Callable[[Step], None] | None = None,
) -> ReduceResult:
    """Find a small sub-model of ``model`` on which ``check`` still fails.

    Args:
        model: the IR model.
        check: what failing means; its :meth:`~Check.calibrate` sees the original's outcome first.
        values: known values of the model on one run (feeds for cut inputs, data for constants).
        types_by_name: inferred types of the model's values.
        seed: seed of random data for cut inputs whose value is unknown.
        on_step: called after every candidate checked.

    Returns:
        The reduced model, its feeds and the path taken.

    Raises:
        NotFailing: the check passes on the whole model.
    """
    start = time.perf_counter()
    cutter = Cutter(model, types_by_name, values, seed=seed)
    search = _Search(cutter, check, on_step)
    everything = list(range(len(cutter)))
    original = search.run(everything, "original")
    if not original.failing:
        raise NotFailing(
            f"the check passes on the original model ({original.detail or original.kind}); nothing to reduce"
        )
    check.calibrate(original)
    search.cache[tuple(everything)] = True
    kept = search.output_cut(everything)
    kept = search.input_cut(kept)
    kept = search.ddmin(kept)
    reduced, feeds = cutter.build(kept)
    return ReduceResult(
        reduced,
        feeds,
        len(everything),
        kept,
        search.steps,
        time.perf_counter() - start,
        search.check_seconds,
        original.detail,
    )
