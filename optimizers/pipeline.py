"""``optimize``: run the pass pipeline, verify the result, roll back what broke it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import onnx

import onnxgraph
from onnxgraph.errors import OnnxGraphError, PassRaised, VerificationFailed
from onnxgraph.model import Model
from onnxgraph.optimizers.base import PassManager, PipelineResult
from onnxgraph.optimizers.fold import DEFAULT_SIZE_LIMIT
from onnxgraph.optimizers.fusions.ort_contrib import LEFT_TO_ONNXRUNTIME, ContribReport, fuse_for_onnxruntime
from onnxgraph.optimizers.provenance import Provenance
from onnxgraph.optimizers.registry import build_pipeline, default_pipeline
from onnxgraph.optimizers.registry import passes as registered_passes
from onnxgraph.optimizers.utils import legacy_initializer_inputs_as_constants
from onnxgraph.optimizers.verify import Verification, Verifier
from onnxgraph.runtime.inputs import check_shapes, specs_of
from onnxgraph.shape_inference import annotate_types
from onnxgraph.tensor import Tensor

Progress = Callable[[str], None]

PHASES = ("load", "type_annotation", "passes", "verification")
"""The phases :attr:`OptimizeReport.timings` times, in order (``onnxruntime_fusions`` follows with
``target="ort"``, and the CLI adds ``save``)."""


@dataclass
class ModelStats:
    """Size of a model: nodes (subgraphs and functions included), initializers and their bytes
    (``external_bytes`` of them in external-data files)."""

    nodes: int
    initializers: int
    bytes: int
    external_bytes: int = 0

    @classmethod
    def of(cls, model: Model) -> ModelStats:
        tensors = [t for g in model.all_graphs() for v in g.initializers.values() if (t := v.const_value) is not None]
        external = sum(t.nbytes for t in tensors if isinstance(t, Tensor) and t.is_external)
        return cls(sum(1 for _ in model.all_nodes()), len(tensors), sum(t.nbytes for t in tensors), external)


@dataclass
class PassReport:
    """What one pass did over all rounds: changes per rewrite and time."""

    name: str
    changes: dict[str, int]
    seconds: float


@dataclass
class Rollback:
    """A pass, or one rewrite of it, dropped because the model it produced failed verification or
    because it raised an exception."""

    pass_name: str
    rewrite: str | None
    reason: str


@dataclass
class OptimizeReport:
    """Everything :func:`optimize` did."""

    before: ModelStats
    after: ModelStats
    pipeline: list[str]
    passes: list[PassReport] = field(default_factory=list)
    rounds: int = 0
    seconds: float = 0.0
    verified: bool = False
    verification: Verification | None = None
    rollbacks: list[Rollback] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    """Seconds spent per phase (:data:`PHASES`), summed over every run of the pipeline, bisection
    included; ``passes`` holds the time of the pass manager (per pass, of the last run: :attr:`passes`)."""
    contrib: ContribReport | None = None
    """onnxruntime's transformer fusions (``target="ort"`` only)."""

    @property
    def ok(self) -> bool:
        """True when the result may be written: verification passed or was not asked for."""
        return not self.verified or (self.verification is not None and self.verification.passed)

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        data = asdict(self)
        data["ok"] = self.ok
        return data


def optimize(
    model: Model | str | os.PathLike | bytes | onnx.ModelProto,
    *,
    passes: Sequence[str] | None = None,
    verify: bool = True,
    size_limit: int = DEFAULT_SIZE_LIMIT,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    on_progress: Progress | None = None,
    max_rounds: int = 8,
    allow_external_data_outside: bool = False,
    disabled: Mapping[str, Iterable[str]] | None = None,
    target: str = "standard",
    model_type: str = "bert",
    verify_regions: bool = True,
) -> tuple[Model, OptimizeReport]:
    """Optimize a model and check that it still computes the same outputs.

    With ``verify`` (the default), the original and the optimized model run on onnxruntime CPU
    with the same seeded random inputs. On a mismatch the pipeline is bisected to the offending
    pass and, inside it, the offending rewrite; that is switched off and the pipeline rerun. A pass
    that raises an exception is handled the same way, with or without ``verify``. The report lists
    every rollback with its reason.

    Args:
        model: an IR model (left untouched), a path, serialized bytes or a ModelProto.
        passes: pass names to run (default: the default pipeline).
        verify: compare against the original on onnxruntime.
        size_limit: largest constant the folder may create, in elements.
        input_shapes: sizes of dynamic inputs for verification (other dynamic dims get 2, or 1
            when the original does not run with 2).
        on_progress: called with a short message as work proceeds.
        max_rounds: the pipeline repeats until nothing changes, at most this often.
        allow_external_data_outside: load a model path whose external data lies outside its folder or
            behind symbolic links (see :func:`onnxgraph.load`; unsafe for models from others).
        disabled: rewrite cases to switch off from the start, by pass name (``{"noop": ["identity"]}``).
        target: ``"standard"`` (standard ONNX ops only) or ``"ort"``: then onnxruntime's transformer
            fusions into ``com.microsoft`` ops, kept only when they verify (see
            :mod:`onnxgraph.optimizers.fusions.ort_contrib`); the rewrites whose patterns onnxruntime's
            fusions start from are off then (``ort_contrib.LEFT_TO_ONNXRUNTIME``).
        model_type: onnxruntime's model family for ``target="ort"`` (``bert``, ``gpt2``, ...).
        verify_regions: check only the regions that differ from the original where that decides
            (:mod:`onnxgraph.optimizers.regions`; the original then runs as loaded, once); False runs
            the original from its file and every result whole.

    Returns:
        ``(optimized model, report)``; check ``report.ok`` before using the model when verifying.

    Raises:
        VerificationFailed: verification fails even with every pass rolled back.
        InputError: ``input_shapes`` names an input the model does not have, or does not fit it.
        OnnxGraphError: an unknown pass or rewrite name, or a model that cannot be loaded.
    """
    start = time.perf_counter()
    say = on_progress or (lambda message: None)
    timings = dict.fromkeys(PHASES, 0.0)
    with _timed(timings, "load"):
        if isinstance(model, bytes | onnx.ModelProto):
            model = onnxgraph.load(model)
        source = os.fspath(model) if isinstance(model, str | os.PathLike) else model
        copy = _copier(source, allow_external_data_outside)

    def fresh() -> Model:
        with _timed(timings, "load"):
            return copy()

    original = fresh()
    if target not in ("standard", "ort"):
        raise OnnxGraphError(f"unknown target '{target}' (known: standard, ort)")
    names = list(passes) if passes is not None else default_pipeline()
    build_pipeline(names)  # unknown names fail before any work
    if input_shapes:
        check_shapes(specs_of(original), input_shapes)
    disabled = _checked_disabled(disabled or {})
    if target == "ort":
        for name, rewrites in LEFT_TO_ONNXRUNTIME.items():
            if name in registered_passes():
                disabled.setdefault(name, set()).update(rewrites & set(registered_passes()[name].rewrites))
    report = OptimizeReport(
        before=ModelStats.of(original),
        after=ModelStats.of(original),
        pipeline=names,
        verified=verify,
        timings=timings,
    )
    verifier = None
    if verify:
        say("running the original model")
        # onnxruntime refuses external data outside the model's folder: run the loaded copy instead
        with _timed(timings, "verification"):
            verifier = Verifier(
                original if allow_external_data_outside else source,
                original,
                input_shapes=input_shapes,
                reference=fresh if verify_regions else None,
            )
    active = list(names)
    candidate = original  # the first run rewrites the loaded copy itself; reruns start from fresh copies
    culprit: str | None
    while True:
        provenance = Provenance(candidate) if verifier is not None else None
        try:
            result = _run(candidate, active, disabled, size_limit, max_rounds, say, timings, provenance)
        except PassRaised as exc:  # the half-rewritten candidate is dropped below
            failure, culprit = str(exc), exc.pass_name
        else:
            if verifier is None:
                break
            say("verifying")
            with _timed(timings, "verification"):
                verification = verifier.check(candidate)
            report.verification = verification
            if verification.passed:
                break
            if not active:
                raise VerificationFailed(report)
            failure, culprit = verification.describe(), None
            suspects = provenance.passes_of(verifier.suspects) if provenance is not None else set()
            if len(suspects) == 1:  # one pass alone changed the regions that differ: no prefix to bisect
                culprit = suspects.pop()
                say(f"the regions that differ were changed by pass {culprit} alone")
        rollback = _bisect(
            fresh, verifier, active, disabled, size_limit, max_rounds, say, timings=timings, culprit=culprit
        )
        rollback.reason = rollback.reason or failure
        report.rollbacks.append(rollback)
        if rollback.rewrite is None:
            active.remove(rollback.pass_name)
        else:
            disabled.setdefault(rollback.pass_name, set()).add(rollback.rewrite)
        candidate = fresh()
    if target == "ort":
        say("applying onnxruntime's transformer fusions")
        timings["onnxruntime_fusions"] = 0.0
        with _timed(timings, "onnxruntime_fusions"):
            candidate, report.contrib = fuse_for_onnxruntime(candidate, verifier, model_type=model_type)
    report.passes = [
        PassReport(name, {k: v for k, v in r.stats.items() if v}, r.seconds) for name, r in result.per_pass.items()
    ]
    report.rounds = result.rounds
    report.after = ModelStats.of(candidate)
    report.seconds = time.perf_counter() - start
    return candidate, report


def _checked_disabled(disabled: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """``disabled`` as sets, every pass and rewrite name checked against the registry."""
    available = registered_passes()
    checked: dict[str, set[str]] = {}
    for name, rewrites in disabled.items():
        if name not in available:
            raise OnnxGraphError(f"unknown pass '{name}' (known: {', '.join(sorted(available))})")
        for rewrite in rewrites:
            if rewrite not in available[name].rewrites:
                known = ", ".join(available[name].rewrites) or "none"
                raise OnnxGraphError(f"pass '{name}' has no rewrite '{rewrite}' (its rewrites: {known})")
        checked[name] = set(rewrites)
    return checked


def _copier(source: Model | str, allow_outside: bool = False) -> Callable[[], Model]:
    """A function returning a fresh copy of the original model each time it is called."""
    if isinstance(source, str):
        return lambda: onnxgraph.load(source, allow_external_data_outside=allow_outside)
    proto = source.to_proto()
    return lambda: onnxgraph.from_proto(proto)


@contextlib.contextmanager
def _timed(timings: dict[str, float], phase: str) -> Iterator[None]:
    """Add the seconds the block takes to ``timings[phase]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[phase] += time.perf_counter() - start


def _run(
    model: Model,
    names,
    disabled,
    size_limit,
    max_rounds,
    say,
    timings: dict[str, float],
    provenance: Provenance | None = None,
) -> PipelineResult:
    """Run the pipeline ``names`` on ``model`` in place (adding to ``timings``; noting in ``provenance``
    which pass changed which node)."""
    pipeline = build_pipeline(names, options={"size_limit": size_limit}, disabled=disabled)

    def on_pass(name: str, result) -> None:
        say(f"pass {name}: {sum(result.stats.values())} changes")
        if provenance is not None and result.changed:
            provenance.after(name)

    manager = PassManager(pipeline, max_rounds=max_rounds, on_pass=on_pass)
    with legacy_initializer_inputs_as_constants(model):
        with _timed(timings, "type_annotation"):
            annotate_types(model)  # shape-dependent rewrites read Value.type
        with _timed(timings, "passes"):
            return manager(model)


def _bisect(
    fresh,
    verifier: Verifier | None,
    names: list[str],
    disabled,
    size_limit,
    max_rounds,
    say,
    *,
    timings: dict[str, float],
    culprit: str | None = None,
) -> Rollback:
    """Find the first pass whose addition breaks the model (or ``culprit``, a pass known to raise),
    then the rewrite of it to blame. Without a verifier only exceptions count as breaking."""

    def fails(prefix: list[str], extra_disabled: Mapping[str, set[str]] | None = None) -> str | None:
        """Why the pipeline ``prefix`` gives no correct model, or None when it does."""
        merged = {k: set(v) for k, v in disabled.items()}
        for k, v in (extra_disabled or {}).items():
            merged.setdefault(k, set()).update(v)
        model = fresh()
        try:
            _run(model, prefix, merged, size_limit, max_rounds, say, timings)
        except PassRaised as exc:
            return str(exc)
        if verifier is None:
            return None
        with _timed(timings, "verification"):
            verification = verifier.check(model)
        return None if verification.passed else verification.describe()

    reason = ""
    if culprit is not None:
        high = names.index(culprit) + 1
        reason = fails(names[:high]) or ""  # a suspect named by region verification may be wrong: then bisect
    if not reason:
        low, high = 0, len(names)  # prefix of `low` passes verifies; the full list (`high`) does not
        while high - low > 1:
            middle = (low + high) // 2
            say(f"bisecting: trying the first {middle} passes")
            if fails(names[:middle]):
                high = middle
            else:
                low = middle
        culprit = names[high - 1]
        reason = fails(names[:high]) or ""
    assert culprit is not None
    for rewrite in registered_passes()[culprit].rewrites:
        if rewrite in disabled.get(culprit, ()):
            continue
        say(f"bisecting: {culprit} without {rewrite}")
        if not fails(names[:high], {culprit: {rewrite}}):
            return Rollback(culprit, rewrite, reason)
    return Rollback(culprit, None, reason)
