"""Checking an optimized model against the original on onnxruntime CPU with seeded random inputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxgraph.errors import RunBudgetExceeded, VerificationUnavailable, one_line
from onnxgraph.model import Model
from onnxgraph.optimizers.utils import RANDOM_OPS
from onnxgraph.runtime.compare import OutputComparison, compare_outputs
from onnxgraph.runtime.memory import release_freed_memory
from onnxgraph.runtime.sizing import run_sized

_OPTIMIZATION = "disable"
"""onnxruntime's own graph optimizations are off while verifying: the comparison is of our rewrites,
not of onnxruntime's, and its optimizers take superlinear time on large graphs (about 45 of the 60
CPU seconds of optimizing a 50,000-node Add chain with them on)."""


@dataclass
class Verification:
    """The outcome of comparing the optimized model with the original.

    Attributes:
        passed: every compared output is within tolerance.
        outputs: one comparison per output.
        error: why the optimized model could not be run, if it could not.
        skipped: outputs left out because the original itself is not reproducible (random ops).
    """

    passed: bool
    outputs: list[OutputComparison] = field(default_factory=list)
    error: str = ""
    skipped: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """A one-line reason for a failure ("" when passed)."""
        if self.passed:
            return ""
        if self.error:
            return self.error
        bad = [c for c in self.outputs if not c.passed]
        return "; ".join(
            f"output '{c.name}': {c.note or f'{c.mismatches}/{c.size} values off, max abs error {c.max_abs:.3g}'}"
            for c in bad
        )


class Verifier:
    """Holds the original model's reference outputs and checks candidates against them.

    Args:
        original: the unoptimized model (an IR model, or the path it was loaded from).
        model: the original's IR (for its inputs and ops).
        input_shapes: sizes for dynamic inputs (name -> dims); other dynamic dims get the first
            sizes the original runs with (:func:`onnxgraph.runtime.sizing.run_sized`).
        seed: seed of the random inputs.

    Both models run in child processes (:func:`run_model`), each stopped after the check's time budget
    (``written.check_seconds()``).

    Raises:
        VerificationUnavailable: the original model does not run on onnxruntime, or not within the budget.
    """

    def __init__(
        self,
        original: str | Model,
        model: Model,
        *,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        seed: int = 0,
    ):
        try:
            run = run_model(original)
            self.feeds, self.expected = run_sized(model, run, input_shapes=input_shapes, seed=seed)
        except RunBudgetExceeded as exc:
            raise VerificationUnavailable(f"the original model was not run: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise VerificationUnavailable(f"the original model does not run on onnxruntime: {one_line(exc)}") from exc
        del run
        release_freed_memory()
        self.skipped = _random_outputs(model)
        for name in self.skipped:
            self.expected.pop(name, None)

    def check(self, candidate: Model) -> Verification:
        """Run ``candidate`` on the same inputs and compare every output.

        Raises:
            VerificationUnavailable: the candidate did not run within the time budget (it is unverified).
        """
        try:
            actual = run_model(candidate)(self.feeds)
        except RunBudgetExceeded as exc:  # unverified, not wrong: nothing may claim it was verified
            raise VerificationUnavailable(f"the optimized model was not run: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - any runtime failure is a failed verification
            error = f"the optimized model does not run: {one_line(exc)}"
            return Verification(False, error=error, skipped=self.skipped)
        finally:
            release_freed_memory()
        comparisons = compare_outputs(self.expected, actual)
        return Verification(all(c.passed for c in comparisons), comparisons, skipped=self.skipped)


def run_model(model: str | Model) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function ``feeds -> {output name: array}`` running ``model`` (a path or an IR model) on
    onnxruntime CPU in a child process stopped at the check's time budget
    (:func:`onnxgraph.runtime.isolated.run_bounded`; large graphs run in chunks there)."""
    from onnxgraph.runtime.isolated import run_bounded

    return lambda feeds: run_bounded(model, feeds, optimization=_OPTIMIZATION)


def _random_outputs(model: Model) -> list[str]:
    """Names of graph outputs that depend on a random op (they differ between runs)."""
    if not any(n.op_type in RANDOM_OPS for n in model.all_nodes()):
        return []
    tainted: set[int] = set()
    for node in model.graph.nodes:  # topological order
        reads = [v for v in node.inputs if v is not None]
        random = node.op_type in RANDOM_OPS
        if node.subgraphs():
            reads += node.implicit_inputs()
            random = random or any(n.op_type in RANDOM_OPS for g in node.subgraphs() for n in g.all_nodes())
        if random or any(id(v) in tainted for v in reads):
            tainted.update(id(v) for v in node.outputs)
    # outputs are compared by name, so an unnamed one (not valid ONNX) has nothing to leave out
    return [v.name for v in model.graph.outputs if id(v) in tainted and v.name is not None]
