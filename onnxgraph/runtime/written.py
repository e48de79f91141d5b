"""The last check before a command writes a model: what we write is a model that works.

Every command that writes a model (convert, grad, optimize) calls :func:`check_before_write` on it:
the model must pass ``onnx.checker`` and, when onnxruntime runs the command's input, it must load and
run on onnxruntime too (in a child process, so a crash of onnxruntime is a reason, not a dead
command). A command whose own verification already ran the result on onnxruntime says so and the
run is not repeated.

Both runs (the input, then the result) happen in child processes stopped after :func:`check_seconds`:
onnxruntime's session creation grows quadratically with the number of nodes that can run side by side
(100,000 Relu nodes reading one input, the mask branches of a long chain's gradient), so on such graphs
the check is skipped with a note saying why, rather than holding the command for an unbounded time.

This run has onnxruntime's graph optimizations off: it checks that the model loads (types, kernels)
and runs, and onnxruntime's optimizers cost superlinear time on large graphs (14 CPU seconds on the
16,000-node gradient of a 4,000-node chain, against 1.4 with them off). Verification against the
original (``convert``, ``optimize``) runs with all optimizations, as users' sessions do.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence

import onnx

from onnxgraph.errors import ResultCheckFailed, RunBudgetExceeded
from onnxgraph.model import Model
from onnxgraph.runtime.inputs import specs_of
from onnxgraph.runtime.sizing import SizePlan, runnable_plan
from onnxgraph.serde.fileio import load

_INLINE_CHECK_BYTES = 1 << 20
"""Tensors up to this size keep their data in the copy given to onnx.checker; larger ones go
without (the checker looks at types and structure, not values)."""
_SPARSE = "sparse.data"


def check_before_write(
    model: Model,
    *,
    source: str | None = None,
    ran_on_onnxruntime: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> str:
    """Check the model about to be written; raise when it must not be written.

    Args:
        model: the result.
        source: the command's input file; when onnxruntime runs it, ``model`` must run too.
            None skips the onnxruntime check (``--no-verify``).
        ran_on_onnxruntime: the command's own verification already ran ``model`` on onnxruntime.
        input_shapes: sizes for dynamic inputs.

    Returns:
        A note on what running the result took ("" usually; say, a retry with an onnxruntime
        optimizer disabled after a crash).

    Raises:
        ResultCheckFailed: the result fails onnx.checker, or onnxruntime runs ``source`` but not it.
    """
    problem = checker_problem(model)
    if problem:
        raise ResultCheckFailed(f"the result fails onnx.checker: {problem}")
    if source is None or ran_on_onnxruntime:
        return ""
    from onnxgraph.runtime.isolated import run_isolated
    from onnxgraph.serde.fileio import save

    plan, note = _plan_the_source_runs_with(source, input_shapes)
    if plan is None:
        return note
        return ""
    feeds = plan.inputs(specs_of(model), input_shapes)
    with tempfile.TemporaryDirectory(prefix="onnxgraph-check-") as folder:
        path = os.path.join(folder, "result.onnx")
        save(model, path)
        run = run_isolated(path, feeds, optimization="disable", timeout=check_seconds())
    if run.missing_kernel:
        return f"not run on onnxruntime: its CPU provider has no kernel for an op of the result ({run.error})"
    if run.timed_out:
        return f"not run on onnxruntime: {_over_budget(run, 'the result')}"
    if run.outputs is None:
        raise ResultCheckFailed(f"onnxruntime runs the input but not the result: {run.error}")
    return run.note


def check_seconds() -> float:
    """How long each run of the check may take, session creation included: twice the run budget
    (``sessions.run_budget()``, ``ONNXGRAPH_RUN_BUDGET``)."""
    from onnxgraph.runtime.sessions import run_budget

    return 2 * run_budget()


def _over_budget(run, which: str) -> str:
    """Why a check that ran out of time was skipped: onnxruntime's session creation is the bound."""
    from onnxgraph.runtime.isolated import over_budget

    return over_budget(f"{run.error} for {which}")


def checker_problem(model: Model) -> str:
    """The first line of onnx.checker's complaint about ``model`` ("" when it passes).

    Large tensors are not copied for the checker: they point into a sparse file of the right size
    (the checker reads sizes and types, not values).
    """
    from onnxgraph.errors import one_line
    from onnxgraph.serde.exporter import export_model
    from onnxgraph.serde.external import metadata_only

    with tempfile.TemporaryDirectory(prefix="onnxgraph-checker-") as folder:
        end = 0

        def sink(tensor, name: str) -> onnx.TensorProto:
            nonlocal end
            if tensor.nbytes <= _INLINE_CHECK_BYTES or tensor.elem_type == onnx.TensorProto.STRING:
                return tensor.to_proto(name)
            proto = metadata_only(tensor, name)
            proto.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", _SPARSE), ("offset", str(end)), ("length", str(tensor.nbytes))):
                entry = proto.external_data.add()
                entry.key, entry.value = key, value
            end += tensor.nbytes
            return proto

        try:
            proto = export_model(model, sink)
            with open(os.path.join(folder, _SPARSE), "wb") as f:
                f.truncate(end)
            path = os.path.join(folder, "model.onnx")
            onnx.save_model(proto, path)
            onnx.checker.check_model(path)
        except (onnx.checker.ValidationError, ValueError) as exc:
            return one_line(exc)
    return ""


def _plan_the_source_runs_with(
    path: str, input_shapes: Mapping[str, Sequence[int]] | None
) -> tuple[SizePlan | None, str]:
    """The sizes with which onnxruntime runs the model file at ``path`` (optimizations off, as for the
    result; each try in a child process stopped at :func:`check_seconds`), and a note: (None, "")
    when onnxruntime does not run it at all, (None, why) when a run exceeded the check's time."""
    from onnxgraph.runtime.isolated import IsolatedRun, run_isolated

    over_time: list[IsolatedRun] = []

    def run(feeds: dict) -> object:
        result = run_isolated(path, feeds, optimization="disable", timeout=check_seconds())
        if result.timed_out:
            over_time.append(result)
            raise RunBudgetExceeded(result.error)
        if result.outputs is None:
            raise RuntimeError(result.error)
        return result.outputs

    try:
        plan, _, _ = runnable_plan(load(path), run, input_shapes=input_shapes)
    except RunBudgetExceeded:
        return None, f"not run on onnxruntime: {_over_budget(over_time[-1], 'the input')}"
    except Exception:  # noqa: BLE001 - onnxruntime raises its own exception types
        return None, ""
    return plan, ""
