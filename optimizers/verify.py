"""Checking an optimized model against the original on onnxruntime CPU with seeded random inputs."""

from __future__ import annotations

import ctypes
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxgraph.errors import VerificationUnavailable, one_line
from onnxgraph.model import Model
from onnxgraph.optimizers.utils import RANDOM_OPS
from onnxgraph.runtime.compare import OutputComparison, compare_outputs
from onnxgraph.runtime.inputs import defaulted_dims, random_inputs, specs_of
from onnxgraph.runtime.sessions import RunBudgetExceeded, run_within_budget
from onnxgraph.serde.fileio import _inline_bytes
from onnxgraph.tensor import Tensor

_INLINE_LIMIT = 1 << 30
"""Models with more inline tensor data than this go to onnxruntime through a temporary file."""


_OPTIMIZATION = "disable"
"""onnxruntime's own graph optimizations are off while verifying: the comparison is of our rewrites,
not of onnxruntime's, and its optimizers take superlinear time on large graphs (about 45 of the 60
CPU seconds of optimizing a 50,000-node Add chain with them on)."""

DYNAMIC_DIMS = (2, 1)
"""Sizes tried, in order, for dynamic dimensions that ``input_shapes`` does not fix: 2 first, so a
rewrite that wrongly fixes a dimension to 1 (a common export size) cannot pass unnoticed."""


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
        input_shapes: sizes for dynamic inputs (name -> dims); other dynamic dims get
            :data:`DYNAMIC_DIMS` (the first size the original runs with).
        seed: seed of the random inputs.

    Raises:
        VerificationUnavailable: the original model does not run on onnxruntime.
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
            for size in DYNAMIC_DIMS:
                self.feeds = random_inputs(specs_of(model), shapes=input_shapes, seed=seed, dynamic_dim=size)
                try:
                    self.expected = run(self.feeds)
                    break
                except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
                    if size == DYNAMIC_DIMS[-1] or isinstance(exc, RunBudgetExceeded):
                        raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception types
            guessed = defaulted_dims(specs_of(model), input_shapes, " and ".join(map(str, DYNAMIC_DIMS)))
            hint = f" on random inputs ({guessed})" if guessed else ""
            raise VerificationUnavailable(
                f"the original model does not run on onnxruntime{hint}: {one_line(exc)}"
            ) from exc
        del run
        self.skipped = _random_outputs(model)
        for name in self.skipped:
            self.expected.pop(name, None)

    def check(self, candidate: Model) -> Verification:
        """Run ``candidate`` on the same inputs and compare every output."""
        try:
            actual = run_model(candidate)(self.feeds)
        except Exception as exc:  # noqa: BLE001 - any runtime failure is a failed verification
            error = f"the optimized model does not run: {one_line(exc)}"
            return Verification(False, error=error, skipped=self.skipped)
        finally:
            _release_freed_memory()
        comparisons = compare_outputs(self.expected, actual)
        return Verification(all(c.passed for c in comparisons), comparisons, skipped=self.skipped)


def run_model(model: str | Model):
    """A function ``feeds -> {output name: array}`` running ``model`` on onnxruntime CPU."""
    from onnxgraph.runtime.sessions import create_session

    if isinstance(model, str):
        session = create_session(model, optimization=_OPTIMIZATION)
    elif not _has_external(model) and _inline_bytes(model) < _INLINE_LIMIT:
        session = create_session(model.to_proto(), optimization=_OPTIMIZATION)
    else:
        session = _session_over_source_data(model) or _session_through_copy(model)

    def run(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in session.get_outputs()]
        wanted = {i.name for i in session.get_inputs()}
        return dict(zip(names, run_within_budget(session, names, {k: v for k, v in feeds.items() if k in wanted})))

    return run


def _session_over_source_data(model: Model):
    """A session whose unchanged external tensors are read from the source's own data file.

    The model file is written, for a moment, beside that data file (onnxruntime only reads
    external data from the model's folder); no weight is copied or even touched here. None when
    that is not possible (several folders, nested locations, a read-only folder, >2 GB inline).
    """
    from onnxgraph.runtime.sessions import create_session
    from onnxgraph.serde.exporter import export_model

    folders: set[str] = set()

    def sink(tensor, name: str) -> onnx.TensorProto:
        if not tensor.is_external or tensor.proto is None:
            return tensor.to_proto(name)
        location = next((e.value for e in tensor.proto.external_data if e.key == "location"), "")
        if os.path.basename(location) != location:
            raise _NotShareable
        folders.add(os.path.dirname(tensor.external_path))
        proto = onnx.TensorProto()
        proto.CopyFrom(tensor.proto)
        proto.name = name
        return proto

    try:
        payload = export_model(model, sink).SerializeToString()
    except (_NotShareable, ValueError):  # ValueError: protobuf's 2 GB limit
        return None
    if len(folders) != 1:
        return None
    try:
        fd, path = tempfile.mkstemp(prefix=".onnxgraph-verify-", suffix=".onnx", dir=folders.pop())
    except OSError:
        return None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        return create_session(path, optimization=_OPTIMIZATION)
    finally:
        os.unlink(path)


class _NotShareable(Exception):
    """A tensor's external data cannot be referenced from a model written beside it."""


def _session_through_copy(model: Model):
    """A session over a temporary copy of the whole model (weights in external data)."""
    from onnxgraph.runtime.sessions import create_session
    from onnxgraph.serde.fileio import save

    with tempfile.TemporaryDirectory(prefix="onnxgraph-verify-") as folder:
        path = os.path.join(folder, "model.onnx")
        save(model, path, external_data="auto")
        return create_session(path, optimization=_OPTIMIZATION)


def _has_external(model: Model) -> bool:
    return any(
        v.const_value.is_external
        for g in model.all_graphs()
        for v in g.initializers.values()
        if isinstance(v.const_value, Tensor)
    )


def _release_freed_memory() -> None:
    """Hand memory freed by a finished onnxruntime session back to the OS.

    glibc keeps freed session buffers (a whole copy of the weights) in its arenas, so saving the
    model afterwards would stack on top of them; elsewhere this does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


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
