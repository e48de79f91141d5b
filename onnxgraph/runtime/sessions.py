"""onnxruntime sessions that behave on CPU-only machines with the GPU build installed."""

from __future__ import annotations

import os
from collections.abc import Mapping

import onnx

_CPU = "CPUExecutionProvider"
_QUIET = 4
"""onnxruntime's FATAL level: no warnings about missing CUDA libraries or unused initializers, and no
coloured copy of an error that reaches the caller anyway as the exception onnxruntime raises."""


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
    providers: tuple[str, ...] = (_CPU,),
    threads: int | None = None,
    optimization: str = "all",
    config_entries: Mapping[str, str] | None = None,
    memory_pattern: bool = True,
):
    """An onnxruntime InferenceSession, CPU unless other providers are named.

    Args:
        model: a path, serialized bytes, or a ModelProto (external data must then be inlined).
        providers: onnxruntime provider names, in priority order.
        threads: intra-op threads (default: onnxruntime's choice).
        optimization: onnxruntime graph optimization level: "disable", "basic", "extended" or "all".
        config_entries: onnxruntime session config entries, such as
            ``{"session.intra_op.allow_spinning": "0"}``.
        memory_pattern: onnxruntime's memory pattern (``enable_mem_pattern``). Gradient and training
            sessions turn it off: it pre-plans one arena block for the whole run, which for a
            backward pass keeps far more memory than freeing each tensor after its last use.
    """
    import onnxruntime as ort

    options = session_options(threads)
    options.enable_mem_pattern = memory_pattern
    for key, value in (config_entries or {}).items():
        options.add_session_config_entry(key, value)
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
    return ort.InferenceSession(model, sess_options=options, providers=list(providers))


def run_model(model, feeds: dict, *, optimization: str = "disable") -> dict:
    """Run ``model`` (an IR Model, ModelProto, bytes or path) once on CPU; outputs by name.

    onnxruntime's own graph optimizations are off by default, so the model runs as written.
    """
    from onnxgraph.model import Model

    if isinstance(model, Model):
        model = model.to_proto()
    session = create_session(model, optimization=optimization)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))
