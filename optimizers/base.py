"""The pass framework: a pass rewrites a model in place and reports what it changed.

A pass is a small class whose docstring lists its rewrites as numbered cases. ``__call__`` returns
a :class:`PassResult`; :class:`PassManager` runs a list of passes to a fixed point with a step limit.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from onnxgraph import renames
from onnxgraph.errors import PassRaised
from onnxgraph.model import Model


@dataclass
class PassResult:
    """What one run of a pass did.

    Attributes:
        changed: whether the model changed.
        stats: counts of each rewrite applied (e.g. ``{"folded": 12}``).
        seconds: wall time of the run.
    """

    changed: bool
    stats: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


class Pass:
    """Base class of optimization passes. Subclasses implement :meth:`run`.

    Args:
        disabled: rewrite cases (names from :attr:`rewrites`) this instance must not apply; the
            verifier uses it to roll back one rewrite of a pass instead of the whole pass.
    """

    name: str = ""
    """Short name used on the command line (``--passes``) and in reports."""
    rewrites: tuple[str, ...] = ()
    """The pass's rewrite cases, in the order its docstring numbers them."""
    options: tuple[str, ...] = ()
    """Keyword arguments of the constructor that pipeline options (e.g. ``size_limit``) feed."""

    def __init__(self, *, disabled: Iterable[str] = ()):
        self.disabled = frozenset(disabled)
        unknown = self.disabled - set(self.rewrites)
        if unknown:
            raise ValueError(f"pass {self.name!r} has no rewrite {sorted(unknown)}")

    def allows(self, rewrite: str) -> bool:
        """Whether rewrite case ``rewrite`` is enabled on this instance."""
        return rewrite not in self.disabled

    def run(self, model: Model) -> Counter[str]:
        """Rewrite ``model`` in place; return the count of each rewrite applied (empty: no change)."""
        raise NotImplementedError

    def __call__(self, model: Model) -> PassResult:
        start = time.perf_counter()
        stats = self.run(model)
        return PassResult(changed=any(stats.values()), stats=Counter(stats), seconds=time.perf_counter() - start)


@dataclass
class PipelineResult:
    """Per-pass totals over all rounds of a :class:`PassManager` run."""

    rounds: int = 0
    per_pass: dict[str, PassResult] = field(default_factory=dict)

    def add(self, name: str, result: PassResult) -> None:
        total = self.per_pass.setdefault(name, PassResult(changed=False))
        total.changed |= result.changed
        total.stats.update(result.stats)
        total.seconds += result.seconds


class PassManager:
    """Runs passes in order, repeating the whole list until nothing changes or ``max_rounds`` is hit.

    An exception of a pass leaves as :class:`PassRaised`, naming the pass (the model is then half
    rewritten and must be discarded).

    Args:
        passes: the pipeline.
        max_rounds: the step limit.
        on_pass: optional callback ``(pass_name, result)`` after each pass run (progress displays).
    """

    def __init__(self, passes: list[Pass], *, max_rounds: int = 8, on_pass=None):
        self.passes = passes
        self.max_rounds = max_rounds
        self.on_pass = on_pass

    def __call__(self, model: Model) -> PipelineResult:
        """Run the pipeline on ``model`` in place; values kept under new names are recorded in its metadata
        (:mod:`onnxgraph.renames`)."""
        with renames.recording(model):
            return self._run(model)

    def _run(self, model: Model) -> PipelineResult:
        summary = PipelineResult()
        for _ in range(self.max_rounds):
            summary.rounds += 1
            changed = False
            for p in self.passes:
                try:
                    result = p(model)
                except Exception as exc:  # noqa: BLE001 - any exception of a pass is a bug to roll back
                    raise PassRaised(p.name, exc) from exc
                summary.add(p.name, result)
                if self.on_pass is not None:
                    self.on_pass(p.name, result)
                changed |= result.changed
            if not changed:
                break
        return summary
