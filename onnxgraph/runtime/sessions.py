"""onnxruntime sessions that behave on CPU-only machines with the GPU build installed."""

from __future__ import annotations

import os
from collections.abc import Mapping

import onnx

from onnxgraph.errors import RunBudgetExceeded

_CPU = "CPUExecutionProvider"
Provider = str | tuple[str, dict[str, str]]
"""An onnxruntime provider: its name, or its name and options (``("CUDAExecutionProvider", {"device_id": "1"})``)."""
_QUIET = 4
"""onnxruntime's FATAL level: no warnings about missing CUDA libraries or unused initializers, and no
coloured copy of an error that reaches the caller anyway as the exception onnxruntime raises."""

RUN_BUDGET_ENV = "ONNXGRAPH_RUN_BUDGET"
DEFAULT_RUN_BUDGET = 120.0
"""Seconds one checking run of a model (verification, the check before writing, bench's first run)
may take before it is stopped: a Loop with a trip count of 1e12 must not hang a command. The
environment variable ``ONNXGRAPH_RUN_BUDGET`` sets another limit."""


def run_budget() -> float:
    """The run budget in seconds: ``ONNXGRAPH_RUN_BUDGET`` or :data:`DEFAULT_RUN_BUDGET`."""
    try:
        return float(os.environ.get(RUN_BUDGET_ENV, DEFAULT_RUN_BUDGET))
    except ValueError:
        return DEFAULT_RUN_BUDGET


def run_within_budget(session, names: list[str] | None, feeds: Mapping, *, budget: float | None = None) -> list:
    """``session.run(names, feeds)``, stopped after ``budget`` seconds (default :func:`run_budget`).

    Raises:
        RunBudgetExceeded: the run took too long (onnxruntime stopped it between kernels).
    """
    import threading

    import onnxruntime as ort

    seconds = run_budget() if budget is None else budget
    options = ort.RunOptions()
    options.log_severity_level = 4  # a stopped Loop logs one error per nesting level otherwise
    timer = threading.Timer(seconds, setattr, (options, "terminate", True))
    timer.daemon = True
    timer.start()
    try:
        return session.run(names, dict(feeds), options)
    except Exception as exc:
        if options.terminate:
            raise RunBudgetExceeded(
                f"did not finish within the {seconds:g} s run budget ({RUN_BUDGET_ENV}=SECONDS sets another)"
            ) from exc
        raise
    finally:
        timer.cancel()


def session_options(threads: int | None = None):
    """SessionOptions with quiet logging and an optional intra-op thread count."""
    import onnxruntime as ort

    ort.set_default_logger_severity(_QUIET)  # the process-wide logger, used before a session has its own
    options = ort.SessionOptions()
    options.log_severity_level = _QUIET
    if threads:
        options.intra_op_num_threads = threads
    return options


def create_session(
    model: str | os.PathLike | bytes | onnx.ModelProto,
    *,
    providers: tuple[Provider, ...] = (_CPU,),
    threads: int | None = None,
    optimization: str = "all",
    config_entries: Mapping[str, str] | None = None,
    memory_pattern: bool = True,
    disabled_optimizers: tuple[str, ...] = (),
    initializers: Mapping[str, object] | None = None,
):
    """An onnxruntime InferenceSession, CPU unless other providers are named.

    Args:
        model: a path, serialized bytes, or a ModelProto (external data must then be inlined).
        providers: onnxruntime provider names (or ``(name, options)`` pairs), in priority order.
        threads: intra-op threads (default: onnxruntime's choice).
        optimization: onnxruntime graph optimization level: "disable", "basic", "extended" or "all".
        config_entries: onnxruntime session config entries, such as
            ``{"session.intra_op.allow_spinning": "0"}``.
        memory_pattern: onnxruntime's memory pattern (``enable_mem_pattern``). Gradient and training
            sessions turn it off: it pre-plans one arena block for the whole run, which for a
            backward pass keeps far more memory than freeing each tensor after its last use.
        disabled_optimizers: onnxruntime graph optimizers to leave out, such as ``("NchwcTransformer",)``.
        initializers: initializer name -> OrtValue that onnxruntime uses in place of the model's own
            (``SessionOptions.add_initializer``; the caller keeps the values alive with the session).
    """
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_mem_pattern = memory_pattern
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
    for name, shared in (initializers or {}).items():
        options.add_initializer(name, shared)
    options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[optimization]
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = os.fspath(model)
    extra = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
    return ort.InferenceSession(model, sess_options=options, providers=list(providers), **extra)


def run_model(model, feeds: dict, *, optimization: str = "disable") -> dict:
    """Run ``model`` (an IR Model, ModelProto, bytes or path) once on CPU; outputs by name.

    onnxruntime's own graph optimizations are off by default, so the model runs as written. The run
    is stopped after :func:`run_budget` seconds (RunBudgetExceeded).
    """
    from onnxgraph.model import Model

    if isinstance(model, Model):
        model = model.to_proto()
    session = create_session(model, optimization=optimization)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, run_within_budget(session, names, feeds), strict=True))
