"""Checking an optimized model against the original on onnxruntime CPU with seeded random inputs.

Two ways, one verdict (docs/optimize.md, "What is checked"): a candidate whose changes form regions
(:mod:`onnxgraph.optimizers.regions`) runs only those regions, fed with the original's values, in one
session; when every value a region hands to unchanged nodes equals the original's bit for bit and the
graph outputs it computes are within tolerance, the candidate passes. Otherwise (a value off, a change
set that cannot be checked so, values over the memory budget) the whole candidate runs and its outputs
decide, as they always did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from onnxgraph.errors import RunBudgetExceeded, Undecidable, VerificationUnavailable, one_line
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.regions import DERIVED_PREFIX, ChangeSet, Snapshot, changes, region_model
from onnxgraph.optimizers.utils import RANDOM_OPS
from onnxgraph.runtime.compare import OutputComparison, compare_arrays, compare_outputs
from onnxgraph.runtime.memory import release_freed_memory
from onnxgraph.runtime.sizing import run_sized
from onnxgraph.tensor import initializer_tensor

_OPTIMIZATION = "disable"
"""onnxruntime's own graph optimizations are off while verifying: the comparison is of our rewrites,
not of onnxruntime's, and its optimizers take superlinear time on large graphs (about 45 of the 60
CPU seconds of optimizing a 50,000-node Add chain with them on)."""


REGION_VALUE_BUDGET = 512 << 20
"""Most bytes of the original's intermediate values kept for region checks (estimated from the
candidate's inferred shapes before the run, measured after it); above it the whole candidate runs."""
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


@dataclass
class Verification:
    """The outcome of comparing the optimized model with the original.

    Attributes:
        passed: every compared output is within tolerance.
        outputs: one comparison per output that was computed and compared.
        error: why the optimized model could not be run, if it could not.
        skipped: outputs left out because the original itself is not reproducible (random ops).
        mode: ``"regions"`` when the changed regions decided, ``"whole"`` when the whole candidate ran.
        regions: changed regions found (0 for an unchanged model), or -1 when none could be formed.
        region_values: values the regions hand on that were compared with the original's.
        unchanged_outputs: graph outputs computed only by unchanged nodes from values equal to the
            original's (equal by construction, not run).
        diverged: region values that differ from the original's beyond tolerance (why the check went to
            the whole model, and where: they name the broken rewrite's nodes).
        note: why the regions did not decide, when they did not.
    """

    passed: bool
    outputs: list[OutputComparison] = field(default_factory=list)
    error: str = ""
    skipped: list[str] = field(default_factory=list)
    mode: str = "whole"
    regions: int = -1
    region_values: int = 0
    unchanged_outputs: list[str] = field(default_factory=list)
    diverged: list[OutputComparison] = field(default_factory=list)
    note: str = ""

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
    """Holds the original model's reference values and checks candidates against them.

    Args:
        original: the unoptimized model (an IR model, or the path it was loaded from).
        model: the original's IR (for its inputs and ops), before any pass rewrites it.
        input_shapes: sizes for dynamic inputs (name -> dims); other dynamic dims get the first
            sizes the original runs with (:func:`onnxgraph.runtime.sizing.run_sized`).
        seed: seed of the random inputs.
        reference: returns a fresh, unchanged copy of the original. With it, the original runs at the
            first :meth:`check`, keeping the intermediate values that candidate's regions need, and
            candidates are checked region by region where they can be; without it the original runs
            now and every check runs the whole candidate.

    Both models run in child processes (:func:`run_model`), each stopped after the check's time budget
    (``written.check_seconds()``).

    Raises:
        VerificationUnavailable: the original model does not run on onnxruntime, or not within the budget
            (at the first check when ``reference`` is given).
    """

    def __init__(
        self,
        original: str | Model,
        model: Model,
        *,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        seed: int = 0,
        reference: Callable[[], Model] | None = None,
    ):
        self._original = original
        self._model_inputs = model
        self._input_shapes = input_shapes
        self._seed = seed
        self._reference = reference
        self.skipped = _random_outputs(model)
        self.feeds: dict[str, np.ndarray] = {}
        self.expected: dict[str, np.ndarray] = {}
        self.values: dict[str, np.ndarray] = {}
        """The original's values kept for region checks (graph inputs and outputs included; its constants
        are read from the snapshot when needed), by name."""
        self.kept_bytes = 0
        """Bytes of the original's intermediate values kept for region checks."""
        self.suspects: list[Node] = []
        """Nodes of the last checked candidate whose regions differ from the original beyond tolerance."""
        self._snapshot = Snapshot(model) if reference is not None else None
        self._ran = False
        if reference is None:
            self._run_original(None)

    def _run_original(self, found: ChangeSet | None) -> str:
        """Run the original once, keeping the values ``found`` needs when they fit the budget; returns
        why none are kept ("" when they are, or none are needed)."""
        self._ran = True
        exposed = self._exposed(found) if found is not None and self._reference is not None else []
        source: str | Model = self._original
        note = ""
        if exposed and self._reference is not None:
            pristine = self._reference()
            if _estimated_bytes(pristine, exposed, self._input_shapes or {}) > REGION_VALUE_BUDGET:
                exposed, note = [], f"the regions' values are over the {REGION_VALUE_BUDGET >> 20} MiB budget"
            else:
                source = _exposing(pristine, exposed)
            del pristine
        try:
            run = run_model(source)
            self.feeds, results = run_sized(self._model_inputs, run, input_shapes=self._input_shapes, seed=self._seed)
        except RunBudgetExceeded as exc:
            raise VerificationUnavailable(f"the original model was not run: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            raise VerificationUnavailable(f"the original model does not run on onnxruntime: {one_line(exc)}") from exc
        del run, source
        release_freed_memory()
        outputs = [v.name for v in self._model_inputs.graph.outputs if v.name is not None]
        self.expected = {name: results[name] for name in outputs if name in results}
        for name in self.skipped:
            self.expected.pop(name, None)
        if self._snapshot is not None:
            kept = {n: results[n] for n in exposed if n in results}
            self.kept_bytes = sum(a.nbytes for a in kept.values())
            if self.kept_bytes <= REGION_VALUE_BUDGET:
                self.values = {**self.feeds, **kept, **self.expected}
            else:
                note = f"the regions' values are over the {REGION_VALUE_BUDGET >> 20} MiB budget"
        return note

    def _exposed(self, found: ChangeSet) -> list[str]:
        """The original's values ``found`` needs that only exposing them as outputs gives."""
        assert self._snapshot is not None
        outputs = {v.name for v in self._model_inputs.graph.outputs}
        known = self._snapshot.graph_inputs | self._snapshot.constants.keys() | outputs
        return [n for n in found.needed if n not in known]

    def check(self, candidate: Model) -> Verification:
        """Check ``candidate`` against the original: its changed regions when they decide, else the whole model."""
        found, note = None, ""
        self.suspects = []
        if self._snapshot is not None:
            try:
                found = changes(self._snapshot, candidate)
            except Undecidable as exc:
                note = str(exc)
            if found is not None and found.new_weights and not self._ran:
                # a performance choice, not a soundness one: such regions go to the whole model anyway
                note = f"changed nodes read new weights ('{found.new_weights[0]}'), which rarely match bit for bit"
                found = None
        if not self._ran:
            note = self._run_original(found) or note
        if found is not None and self._snapshot is not None:
            missing = [n for n in found.needed if n not in self.values and n not in self._snapshot.constants]
            if not missing:
                verdict = self._check_regions(candidate, found)
                if verdict.passed:
                    return verdict
                whole = self._check_whole(candidate)
                whole.regions, whole.region_values = verdict.regions, verdict.region_values
                whole.diverged, whole.note = verdict.diverged, verdict.note
                return whole
            note = f"the original's value '{missing[0]}' was not kept"
        whole = self._check_whole(candidate)
        whole.note = note
        return whole

    def _check_whole(self, candidate: Model) -> Verification:
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

    def _check_regions(self, candidate: Model, found: ChangeSet) -> Verification:
        """Run every region of ``found`` in one session on the original's values and compare.

        Returns a passing verdict only when every value a region hands to unchanged nodes (and every
        alias) equals the original's exactly and every graph output is within tolerance. The nodes
        of the regions that differ beyond tolerance are left in :attr:`suspects`.
        """
        assert self._snapshot is not None
        constants = self._snapshot.constants
        values = {n: self.values[n] if n in self.values else constants[n].numpy() for n in found.needed}
        actual: dict[str, np.ndarray] = {}
        if found.nodes or found.derived:
            try:
                region = region_model(candidate, found, values)
                actual = run_model(region)({v.name: values[v.name] for v in region.graph.inputs if v.name})
            except Exception as exc:  # noqa: BLE001 - the whole candidate then tells what is wrong
                return Verification(False, note=f"the regions do not run: {one_line(exc)}", regions=found.regions)
            finally:
                release_freed_memory()
        derived = {n[len(DERIVED_PREFIX) :]: actual.pop(n) for n in list(actual) if n.startswith(DERIVED_PREFIX)}
        outputs, diverged, inexact = [], [], []
        for expected, name, array, nodes in self._pairs(candidate, found, values, actual, derived):
            exact = _identical(expected, array)
            if name in found.graph_outputs or name in found.passthrough:
                comparison = compare_arrays(name, expected, array, (0.0, 0.0) if exact else None)
                outputs.append(comparison)
                if comparison.passed and not exact and name in found.handed:
                    inexact.append(name)  # unchanged nodes read it too: off by a rounding, theirs may be off more
            elif exact:
                continue
            elif (comparison := compare_arrays(name, expected, array)).passed:
                inexact.append(name)
                continue
            else:
                diverged.append(comparison)
            if not comparison.passed:
                self.suspects += nodes
        passed = not diverged and not inexact and all(c.passed for c in outputs)
        if passed and found.nodes:
            try:  # the regions ran; the whole result must still load (its types and value_info all at once)
                load_model(candidate)
            except RunBudgetExceeded as exc:
                raise VerificationUnavailable(f"the optimized model was not loaded: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
                error = f"the optimized model does not load: {one_line(exc)}"
                return Verification(False, error=error, mode="regions", regions=found.regions)
            finally:
                release_freed_memory()
        note = ""
        if inexact:
            note = (
                f"{len(inexact)} region values within tolerance but not equal to the original's (first: '{inexact[0]}')"
            )
        elif not passed:
            note = "a region differs from the original"
        interface = set(found.graph_outputs) | set(found.passthrough)
        unchanged = [v.name for v in candidate.graph.outputs if v.name and v.name not in interface] if passed else []
        return Verification(
            passed,
            outputs,
            mode="regions",
            regions=found.regions,
            region_values=len(actual) + len(found.aliases) - len(outputs),
            unchanged_outputs=unchanged,
            diverged=diverged,
            note=note,
        )

    def _pairs(
        self,
        candidate: Model,
        found: ChangeSet,
        values: dict[str, np.ndarray],
        actual: dict[str, np.ndarray],
        derived: dict[str, np.ndarray],
    ):
        """``(original's value, name, candidate's value, nodes to blame)`` for every value the check compares
        (``values``: the original's values the check needs)."""
        members: dict[int, list[Node]] = {}
        for node in found.nodes:
            members.setdefault(found.region_of[id(node)], []).append(node)
        for name, array in actual.items():
            partner = found.partners.get(name, name)
            producer = next(n for n in found.nodes if any(v.name == name for v in n.outputs))
            region = members[found.region_of[id(producer)]]
            yield (derived[partner] if partner in derived else values[partner]), name, array, region
        for value in candidate.graph.outputs:
            if value.name and value.name in found.passthrough:
                array = initializer_tensor(value).numpy() if value.is_initializer() else self.feeds[value.name]
                yield values[value.name], value.name, array, []
        for original, value in found.aliases.items():
            data = initializer_tensor(value).numpy() if value.is_initializer() else actual.get(value.name or "")
            if data is None:
                data = values[value.name or ""]
            expected = derived[original] if original in derived else values[original]
            blamed = [n for n, _ in value.uses()]
            if value.producer() is not None:
                blamed.append(value.producer())
            yield expected, f"{value.name} (for '{original}')", data, blamed


def _identical(expected: np.ndarray, actual: np.ndarray) -> bool:
    """Same dtype, shape and bytes (a fast test before the elementwise comparison)."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.dtype != actual.dtype or expected.shape != actual.shape:
        return False
    same_size = _UNSIGNED.get(expected.dtype.itemsize) if expected.dtype.kind != "O" else None
    if same_size is None:
        return bool(np.array_equal(expected, actual))
    return bool(np.array_equal(expected.view(same_size), actual.view(same_size)))  # bits: NaN payloads, -0.0


def _exposing(model: Model, names: Sequence[str]) -> Model:
    """``model`` with the values ``names`` added to its graph outputs (in place; returns it)."""
    by_name = {v.name: v for node in model.graph for v in node.outputs if v.name}
    model.graph.outputs.extend(by_name[n] for n in names if n in by_name)
    return model


def _estimated_bytes(model: Model, names: Sequence[str], input_shapes: Mapping[str, Sequence[int]]) -> int:
    """Bytes of the values ``names`` of ``model``, their shapes inferred for inputs of the first size plan
    (``input_shapes`` first), as ``compare`` sizes its chunks; a value whose size shape inference leaves
    open counts as 4 MiB."""
    from onnxgraph.debug.exposure import estimated_nbytes, estimated_sizes
    from onnxgraph.runtime.inputs import specs_of
    from onnxgraph.runtime.sizing import size_plans

    specs = specs_of(model)
    try:
        feeds = next(size_plans(model, specs)).inputs(specs, input_shapes)
        inferred = estimated_sizes(model, feeds)
    except Exception:  # noqa: BLE001 - shape inference or sizing failing leaves every size open
        inferred = {}
    return sum(estimated_nbytes(inferred.get(name)) for name in names)


def run_model(model: str | Model) -> Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]:
    """A function ``feeds -> {output name: array}`` running ``model`` (a path or an IR model) on
    onnxruntime CPU in a child process stopped at the check's time budget
    (:func:`onnxgraph.runtime.isolated.run_bounded`; large graphs run in chunks there)."""
    from onnxgraph.runtime.isolated import run_bounded

    return lambda feeds: run_bounded(model, feeds, optimization=_OPTIMIZATION)


def load_model(model: Model) -> None:
    """Create (and drop) an onnxruntime CPU session for ``model`` in a bounded child process, running
    nothing: raises as :func:`onnxgraph.runtime.isolated.run_bounded` does when it does not load."""
    from onnxgraph.runtime.isolated import run_bounded

    run_bounded(model, {}, optimization=_OPTIMIZATION, load_only=True)


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
