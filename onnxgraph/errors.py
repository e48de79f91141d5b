"""Every exception class of onnxgraph, and the one helper that turns an exception into one line.

Two families, kept apart so the command line can tell whose fault an error is:

- :class:`OnnxGraphError` and its subclasses are errors a user can cause (bad files, malformed graphs,
  bad arguments, a model onnxruntime rejects). The command line prints them as one line and exits 2.
- :class:`InternalError` and its subclasses (:class:`GraphError`: a pass broke an IR invariant) are bugs
  of onnxgraph's. The command line says "internal error ... please report it" and exits 3, as it does for
  any other unexpected exception.

Failed verifications (:class:`VerificationFailed`) are user-visible outcomes rather than bad input; the
command line maps them to exit code 1. Exceptions a module raises and catches itself as control flow
(never seen outside it) stay private to that module.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxgraph.optimizers.pipeline import OptimizeReport
    from onnxgraph.quantize.quantizer import QuantizeReport

_ORT_NOISE = (
    re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : "),  # status code prefix
    re.compile(r"Load model from .*? failed:"),
    # the C++ source position and function signature before the message itself
    re.compile(r"\S*onnxruntime_src/\S+:\d+ .*?\)(?: const)? (?=[A-Z\[])"),
)


def one_line(error: BaseException | str, *, last: bool = False) -> str:
    """One line of an error message, for one-line reports.

    Args:
        error: an exception (its message is used, or its type name when the message is empty) or a text.
        last: take the last non-blank line instead of the first (onnx's shape inference and version
            converter put the reason last, after a context line).

    Returns:
        The first (or last) non-blank line, stripped and without onnxruntime's noise (the
        ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefix, the model path, the C++ source position
        and signature); an exception's type name when it has no message, "" for an empty text.
    """
    text = error if isinstance(error, str) else str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "" if isinstance(error, str) else type(error).__name__
    line = lines[-1] if last else lines[0]
    for pattern in _ORT_NOISE:
        line = pattern.sub("", line, count=1)
    return line.strip() or (lines[-1] if last else lines[0])


# -- user errors ----------------------------------------------------------------------------------------


class OnnxGraphError(Exception):
    """Base class of the errors a user can cause (bad files, bad graphs, bad arguments)."""


class ModelLoadError(OnnxGraphError):
    """A model file cannot be read: missing, not ONNX, truncated, malformed, or its external data is missing.

    Args:
        source: the file (or a short description of an in-memory source) the model came from.
        problem: what is wrong with it, in a few words.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class MalformedGraphError(OnnxGraphError):
    """An input graph is malformed (a dangling reference, a cycle, a value written twice), found at import."""


class ModelSaveError(OnnxGraphError):
    """A model cannot be written to the requested destination."""


class OutputPathError(OnnxGraphError):
    """A destination must not or cannot be written: it is an input, another output, or its folder is missing."""


class InputError(OnnxGraphError):
    """Inputs given by the user do not fit the model (unknown names, wrong shapes or dtypes, bad files)."""


class ProviderError(OnnxGraphError):
    """The requested execution provider cannot be used on this machine."""


class BenchError(OnnxGraphError):
    """A benchmark cannot run: bad settings, or a model onnxruntime cannot load or run."""


class PlotError(OnnxGraphError):
    """A plot cannot be drawn, usually because matplotlib is not installed."""


class ConversionError(OnnxGraphError):
    """The model cannot be converted as asked (the message names the ops or the limit)."""


class GradientError(OnnxGraphError):
    """A gradient cannot be built: a missing rule on the path, an unsupported op form, a bad loss or wrt
    choice. The command line shows it as one line and exits 2."""


class VerificationUnavailable(OnnxGraphError):
    """The original model cannot be run, so nothing can be verified against it."""


class VerificationFailed(OnnxGraphError):
    """No pipeline, not even an empty one, produced a model that matches the original.

    Args:
        report: the optimizer's report, whose verification says what differed.
    """

    def __init__(self, report: OptimizeReport):
        self.report = report
        reason = report.verification.describe() if report.verification else "unknown"
        super().__init__(f"no correct optimized model could be produced: {reason}")


class WireFormatError(ValueError):
    """Bytes are not a well-formed protobuf message (found by the wire-level scan of a model file, which then
    leaves the file to protobuf's own parser and its message)."""


class EvaluationError(Exception):
    """The runtime could not build or run a constant subgraph (constant folding then leaves it alone)."""


class NotChunkable(OnnxGraphError):
    """A value crossing between chunks of a chunked run is not a tensor (a sequence, an optional): run the
    graph whole (``runtime.chunked``)."""


class Undecidable(Exception):
    """A candidate's changes cannot be checked region by region (``optimizers.regions``); the message says
    why and verification runs the whole model instead."""


class SizingFailed(OnnxGraphError):
    """A model ran with none of the sizes tried for its dynamic dimensions; the message names ``--input-shape``."""


class NotShareable(Exception):
    """A model cannot go to onnxruntime with its weights shared as OrtValues (``runtime.ir_session``);
    the caller goes another way (say, its graph alone exceeds protobuf's 2 GB)."""


class RunError(OnnxGraphError):
    """onnxruntime cannot create a session for the model or run it (the message names the model)."""


class NotFailing(OnnxGraphError):
    """``reduce``: the check passes on the original model, so there is nothing to reduce."""


class QuantizeError(OnnxGraphError):
    """Quantization cannot be done as asked: conflicting settings or a model onnxruntime cannot quantize."""


class AccuracyFailed(OnnxGraphError):
    """The quantized model is further from the float model than ``min_cosine`` allows (nothing written).

    Args:
        report: the quantization report (a ``QuantizeReport``), whose accuracy says what differed.
        min_cosine: the threshold that was missed.
    """

    def __init__(self, report: QuantizeReport, min_cosine: float):
        self.report = report
        super().__init__(report.accuracy.describe_failure(min_cosine))


class TrainingError(OnnxGraphError):
    """A user error in building or running training: bad options, data, or a diverged loss."""


class RunBudgetExceeded(OnnxGraphError):
    """A checking run of the user's model was stopped because it took longer than the run budget."""


class ResultCheckFailed(OnnxGraphError):
    """The model a command is about to write fails onnx.checker or does not run on onnxruntime.

    A failed check of our own result, not bad input: the command line reports it as a failed
    verification (exit 1) and writes nothing.
    """


# -- our bugs -------------------------------------------------------------------------------------------


class InternalError(Exception):
    """Base class of errors that mean onnxgraph has a bug (a broken invariant), never bad input."""


class GraphError(InternalError):
    """An IR invariant would break: a pass removed a node still in use, inserted a node of another graph,
    created a cycle, or renamed the graph's interface. Malformed *input* graphs raise
    :class:`MalformedGraphError` instead."""


class PassRaised(InternalError):
    """A pass raised an exception (a bug of the pass): the pipeline treats it like a wrong rewrite.

    Attributes:
        pass_name: the pass that raised.
        error: the exception it raised.
    """

    def __init__(self, pass_name: str, error: Exception):
        self.pass_name = pass_name
        self.error = error
        message = one_line(error) if str(error).strip() else ""
        super().__init__(f"pass '{pass_name}' raised {type(error).__name__}" + (f": {message}" if message else ""))


# -- interrupts -----------------------------------------------------------------------------------------


class SignalInterrupt(KeyboardInterrupt):
    """SIGTERM or SIGHUP raised as an exception, so that ``finally`` blocks and atomic writes clean up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
