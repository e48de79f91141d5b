"""Running a model on onnxruntime in a child process, so a native crash becomes a one-line error.

onnxruntime can die in native code on models it accepts (1.31 and 1.32 crash with SIGSEGV in
``NchwcTransformer`` while creating a session for some float16 models). In the calling process that
kills the command with no message; in a child process it is an exit status we can name. After a
crash while creating the session, :func:`run_isolated` retries once with the graph optimizers in
:data:`CRASH_PRONE_OPTIMIZERS` disabled and says so in :attr:`IsolatedRun.note`.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from onnxgraph.model import Model
from onnxgraph.runtime.sessions import RUN_BUDGET_ENV

CRASH_PRONE_OPTIMIZERS = ("NchwcTransformer",)
"""onnxruntime graph optimizers disabled on the retry after a crash while creating a session."""

TEST_CRASH_ENV = "ONNXGRAPH_TEST_CRASH"
"""Test hook: "session" makes the child abort while creating a session unless the crash-prone
optimizers are disabled (as onnxruntime does on an fp16 ViT); "always" makes it abort every time;
"hang" makes it sleep instead, "slow-optimized" only when onnxruntime's optimizations are on."""

_MISSING_KERNEL = "Could not find an implementation for"
_PHASES = {"start": "starting", "session": "creating the session", "run": "running the model"}


@dataclass
class IsolatedRun:
    """The outcome of :func:`run_isolated`.

    Attributes:
        outputs: output name -> array, or None when the model did not run.
        error: one line saying why it did not run ("" when it ran).
        crashed: onnxruntime died in native code (on the last attempt, when ``outputs`` is None).
        note: what was done about a crash (a retry with optimizers disabled), "" when nothing was.
        timed_out: the child was stopped at its timeout.
        over_budget: the child stopped the model's run itself, at the run budget
            (``sessions.run_budget()``; a Loop of 1e12 iterations).
    """

    outputs: dict[str, np.ndarray] | None
    error: str = ""
    crashed: bool = False
    note: str = ""
    timed_out: bool = False
    over_budget: bool = False

    @property
    def missing_kernel(self) -> bool:
        """onnxruntime accepted the model but has no CPU kernel for one of its ops (say, bfloat16 Relu).

        A limit of the CPU provider, not a fault of the model: it may well run on CUDA.
        """
        return _MISSING_KERNEL in self.error


def run_isolated(
    model_path: str | os.PathLike,
    feeds: Mapping[str, np.ndarray],
    *,
    optimization: str = "all",
    timeout: float | None = None,
    load_only: bool = False,
) -> IsolatedRun:
    """Create an onnxruntime CPU session for ``model_path`` and run it once, in a child process.

    Args:
        model_path: the model file (its external data beside it).
        feeds: input name -> array (inputs the model does not declare are left out).
        optimization: onnxruntime's graph optimization level (see ``create_session``).
        timeout: seconds before the child is stopped, session creation included (default: four
            times the run budget, ``sessions.run_budget()``; the run itself stops at the budget).
        load_only: create the session and run nothing (the outputs are then empty). A graph over
            :func:`onnxgraph.runtime.chunked.chunk_nodes` nodes is then not loaded at all: whole, its
            session creation is quadratic in its width, and its chunks load when it runs.

    Returns:
        The outputs, or why there are none; never raises for a failure of onnxruntime.
    """
    if timeout is None:
        from onnxgraph.runtime.sessions import run_budget

        timeout = 4 * run_budget()
    first = _attempt(model_path, feeds, optimization, (), timeout, load_only)
    if not (first.crashed and first.error.endswith(_PHASES["session"])):
        return first
    retry = _attempt(model_path, feeds, optimization, CRASH_PRONE_OPTIMIZERS, timeout, load_only)
    disabled = ", ".join(CRASH_PRONE_OPTIMIZERS)
    if retry.outputs is not None:
        retry.note = f"{first.error}; ran again with onnxruntime's {disabled} disabled"
        return retry
    if retry.crashed:
        retry.error += f" (also with {disabled} disabled)"
    return retry


def run_bounded(
    model: str | os.PathLike | Model,
    feeds: Mapping[str, np.ndarray],
    *,
    optimization: str = "disable",
    timeout: float | None = None,
    ir_version: int | None = None,
    load_only: bool = False,
) -> dict[str, np.ndarray]:
    """:func:`run_isolated` for a model file or an IR model, raising when the model does not run.

    An IR model goes to the child through a temporary file written by the streamed save (weights in
    external data, unchanged mapped ones copied file to file), so the child holds the weights once
    and this process does not hold a serialized copy.

    Args:
        model: a model file (run from its file) or an IR model.
        feeds: input name -> array.
        optimization: onnxruntime's graph optimization level.
        timeout: seconds before the child is stopped (default ``written.check_seconds()``, twice
            the run budget ``ONNXGRAPH_RUN_BUDGET``).
        ir_version: for an IR model, the IR version to write (onnxruntime refuses newer ones than it
            knows; IR versions change no semantics).
        load_only: create the session and run nothing (see :func:`run_isolated`).

    Raises:
        RunBudgetExceeded: the child did not create and run the session within ``timeout``, or
            stopped the run itself at the run budget.
        RunError: onnxruntime refused or failed the model, or crashed (the message says which).
    """
    from onnxgraph.errors import RunBudgetExceeded, RunError
    from onnxgraph.runtime.written import check_seconds

    seconds = check_seconds() if timeout is None else timeout
    if isinstance(model, Model):
        from onnxgraph.serde.fileio import save

        with tempfile.TemporaryDirectory(prefix="onnxgraph-verify-") as folder:
            path = os.path.join(folder, "model.onnx")
            save(model, path, external_data="auto", ir_version=ir_version)
            run = run_isolated(path, feeds, optimization=optimization, timeout=seconds, load_only=load_only)
    else:
        run = run_isolated(model, feeds, optimization=optimization, timeout=seconds, load_only=load_only)
    if run.timed_out:
        raise RunBudgetExceeded(over_budget(run.error))
    if run.over_budget:
        raise RunBudgetExceeded(run.error)
    if run.outputs is None:
        raise RunError(run.error)
    return run.outputs


def over_budget(error: str) -> str:
    """``error`` (a run stopped at its timeout) with why that happens and how to allow longer."""
    return (
        f"{error} (onnxruntime's session creation grows quadratically with the number of nodes that can run side "
        f"by side; {RUN_BUDGET_ENV}=SECONDS allows longer)"
    )


def _attempt(
    model_path, feeds, optimization: str, disabled: Sequence[str], timeout: float | None, load_only: bool = False
) -> IsolatedRun:
    from onnxgraph.children import parent_death_hook  # the child must not outlive a killed command

    with tempfile.TemporaryDirectory(prefix="onnxgraph-run-") as folder:
        request = os.path.join(folder, "request.pkl")
        with open(request, "wb") as f:
            pickle.dump(
                {
                    "model": os.fspath(model_path),
                    "feeds": dict(feeds),
                    "optimization": optimization,
                    "disabled": list(disabled),
                    "load_only": load_only,
                },
                f,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
        command = [sys.executable, "-c", "from onnxgraph.runtime.isolated import _child; _child()", folder]
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=False,
                preexec_fn=parent_death_hook(),
            )
        except subprocess.TimeoutExpired:
            return IsolatedRun(
                None, f"onnxruntime did not create and run a session within {timeout:g} s", timed_out=True
            )
        phase = _read(os.path.join(folder, "phase"), b"start").decode()
        if done.returncode < 0:
            name = _signal_name(-done.returncode)
            return IsolatedRun(None, f"onnxruntime crashed ({name}) while {_PHASES.get(phase, phase)}", crashed=True)
        result = os.path.join(folder, "result.pkl")
        if done.returncode != 0 or not os.path.exists(result):
            text = done.stderr.decode("utf-8", "replace").strip()
            return IsolatedRun(None, (text.splitlines() or [f"exit status {done.returncode}"])[-1])
        with open(result, "rb") as f:
            status, payload = pickle.load(f)
    if status in ("error", "budget"):
        return IsolatedRun(None, payload, over_budget=status == "budget")
    return IsolatedRun(payload)


def _read(path: str, default: bytes) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read() or default
    except FileNotFoundError:
        return default


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child() -> None:
    """Entry point of the child process: argv[1] is the folder holding request.pkl."""
    folder = sys.argv[1]

    def phase(name: str) -> None:
        with open(os.path.join(folder, "phase"), "w") as f:
            f.write(name)

    with open(os.path.join(folder, "request.pkl"), "rb") as source:
        request = pickle.load(source)
    result: tuple[str, object]
    try:
        phase("session")
        _test_crash(request["disabled"], request["optimization"])
        outputs = _run_in_child(request, phase)
        result = ("ok", outputs)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        from onnxgraph.errors import RunBudgetExceeded, one_line

        result = ("budget" if isinstance(exc, RunBudgetExceeded) else "error", one_line(exc))
    with open(os.path.join(folder, "result.pkl"), "wb") as f:
        pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)


def _run_in_child(request: dict, phase) -> dict[str, np.ndarray]:
    """Run the request's model: as one session, or in chunks when its main graph has more nodes than
    :func:`onnxgraph.runtime.chunked.chunk_nodes` (onnxruntime's session creation is quadratic in a
    graph's width)."""
    from onnxgraph.errors import NotChunkable
    from onnxgraph.runtime.chunked import chunk_nodes, run_chunked
    from onnxgraph.runtime.ir_session import NO_PREPACKING
    from onnxgraph.runtime.sessions import create_session, run_within_budget
    from onnxgraph.serde.fileio import read_proto

    path, optimization, disabled = request["model"], request["optimization"], tuple(request["disabled"])
    # a checking run: pre-packed weight copies (memory only) are not worth making
    entries = NO_PREPACKING if optimization == "disable" else None
    if len(read_proto(path, tensor_data=False).graph.node) > chunk_nodes():
        if request["load_only"]:
            return {}
        from onnx.external_data_helper import load_external_data_for_model

        proto = read_proto(path)
        load_external_data_for_model(proto, os.path.dirname(os.path.abspath(path)))
        try:
            return run_chunked(
                proto,
                request["feeds"],
                optimization=optimization,
                disabled_optimizers=disabled,
                config_entries=entries,
            )
        except NotChunkable:
            pass
    session = create_session(path, optimization=optimization, disabled_optimizers=disabled, config_entries=entries)
    if request["load_only"]:
        return {}
    phase("run")
    names = [o.name for o in session.get_outputs()]
    wanted = {i.name for i in session.get_inputs()}
    outputs = run_within_budget(session, names, {k: v for k, v in request["feeds"].items() if k in wanted})
    return dict(zip(names, outputs, strict=True))


def _test_crash(disabled: Sequence[str], optimization: str) -> None:
    mode = os.environ.get(TEST_CRASH_ENV, "")
    if mode == "hang" or (mode == "slow-optimized" and optimization != "disable"):
        import time

        time.sleep(3600)
    if mode == "always" or (mode == "session" and not set(CRASH_PRONE_OPTIMIZERS) <= set(disabled)):
        os.abort()
