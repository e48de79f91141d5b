"""What "still failing" means for ``reduce``: a user's command, or a built-in check run in a worker process.

The built-in checks run onnxruntime in a separate, long-lived worker process, so a model that crashes
onnxruntime (a segmentation fault, an abort) is seen as a failure instead of ending ``reduce``; the
worker is restarted after a crash or a timeout.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import numpy as np
import onnx

from onnxgraph.children import die_with_parent, parent_death_hook
from onnxgraph.debug.npz import NpzWriter
from onnxgraph.errors import OnnxGraphError, one_line

_STATUS = re.compile(r"\[ONNXRuntimeError\] : \d+ : (\w+)")


@dataclass(frozen=True)
class Outcome:
    """The result of one check.

    Attributes:
        failing: the check still fails on the candidate.
        kind: for built-in checks, what happened: "ok", "create" (no session), "run" (the run raised),
            "crash" (the worker died), "timeout", "differs", "reference" (onnx.reference raised).
        detail: one line for the report.
    """

    failing: bool
    kind: str = ""
    detail: str = ""


class Check:
    """Base of the checks: ``check(model, feeds) -> Outcome``; :meth:`calibrate` sees the original first."""

    def calibrate(self, outcome: Outcome) -> None:
        """Remember what the original model's failure looks like (called once, with the original's outcome)."""

    def __call__(self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the check holds (a worker process)."""


class CommandCheck(Check):
    """Runs a shell command; a non-zero exit status means the candidate still fails.

    ``{model}`` in the command is replaced by the candidate's path and ``{inputs}`` by an .npz file of
    its inputs. A command running past ``timeout`` counts as failing.
    """

    def __init__(self, command: str, *, timeout: float = 60.0, match: str | None = None) -> None:
        if "{model}" not in command:
            raise OnnxGraphError(f"--check '{command}' has no {{model}} placeholder")
        self.command = command
        self.timeout = timeout
        self.match = re.compile(match) if match else None

    def __call__(self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> Outcome:
        with tempfile.TemporaryDirectory(prefix="onnxgraph-reduce-") as folder:
            path, inputs = os.path.join(folder, "model.onnx"), os.path.join(folder, "inputs.npz")
            onnx.save(model, path)
            if "{inputs}" in self.command:  # not numpy.savez: an input named "file" would clash with its arguments
                with NpzWriter(inputs) as npz:
                    for name, array in feeds.items():
                        npz.add(name, array)
            command = self.command.replace("{model}", shlex.quote(path)).replace("{inputs}", shlex.quote(inputs))
            try:
                done = subprocess.run(
                    command,
                    shell=True,
                    capture_output=True,
                    text=True,
                    timeout=self.timeout,
                    preexec_fn=parent_death_hook(),
                )
            except subprocess.TimeoutExpired:
                return Outcome(True, "timeout", f"ran past {self.timeout:g} s")
        text = (done.stdout + done.stderr).strip()
        failing = done.returncode != 0 and (self.match is None or bool(self.match.search(text)))
        last = text.splitlines()[-1] if text else ""
        return Outcome(failing, "exit", f"exit {done.returncode}" + (f": {last[:160]}" if last else ""))


class WorkerCheck(Check):
    """A built-in check run in a worker process.

    Args:
        mode: "onnxruntime" (fails when no session can be created, the run raises or crashes) or
            "reference" (fails when onnxruntime's outputs differ from onnx.reference's).
        providers: onnxruntime providers.
        timeout: seconds one check may take; longer counts as a failure (a hang).
        match: a regular expression the failure's message must contain.
    """

    def __init__(
        self,
        mode: str,
        *,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
        timeout: float = 60.0,
        match: str | None = None,
    ) -> None:
        self.mode = mode
        self.providers = providers
        self.timeout = timeout
        self.match = re.compile(match) if match else None
        self.signature: tuple[str, str] | None = None
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    def calibrate(self, outcome: Outcome) -> None:
        """Candidates must fail the way the original does: same kind and onnxruntime status code."""
        self.signature = (outcome.kind, _status(outcome.detail))

    def __call__(self, model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> Outcome:
        kind, detail = self._ask(model.SerializeToString(), dict(feeds))
        failing = kind == "differs" if self.mode == "reference" else kind != "ok"
        if failing and self.signature is not None and (kind, _status(detail)) != self.signature:
            failing = False
        if failing and self.match is not None and not self.match.search(detail):
            failing = False
        return Outcome(failing, kind, detail)

    def _ask(self, payload: bytes, feeds: dict[str, np.ndarray]) -> tuple[str, str]:
        process, conn = self._process, self._conn
        if process is None or conn is None or not process.is_alive():
            process, conn = self._start()
        try:
            conn.send((self.mode, payload, feeds, self.providers))
            if not conn.poll(self.timeout):
                self.close()
                return "timeout", f"ran past {self.timeout:g} s"
            return conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            process.join(5)
            code = process.exitcode
            self.close()
            return "crash", f"onnxruntime crashed (exit code {code})"

    def _start(self) -> tuple[BaseProcess, Connection]:
        context = multiprocessing.get_context("spawn")
        conn, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, os.getpid()), daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, conn
        return process, conn

    def close(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
        self._process = None
        self._conn = None


def _status(detail: str) -> str:
    match = _STATUS.search(detail)
    return match.group(1) if match else ""


def _serve(conn: Connection, parent: int) -> None:
    """The worker's loop: run each model it is sent and answer ``(kind, detail)``; it dies with
    ``parent`` (a model hanging in onnxruntime would keep it from noticing the closed pipe)."""
    die_with_parent(parent)
    while True:
        try:
            mode, payload, feeds, providers = conn.recv()
        except EOFError:
            return
        conn.send(_evaluate(mode, payload, feeds, providers))


def _evaluate(mode: str, payload: bytes, feeds: dict, providers: tuple[str, ...]) -> tuple[str, str]:
    from onnxgraph.runtime.sessions import create_session

    try:
        session = create_session(payload, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        return "create", _detail(exc)
    names = [o.name for o in session.get_outputs()]
    try:
        got = dict(zip(names, session.run(names, feeds)))
    except Exception as exc:  # noqa: BLE001
        return "run", _detail(exc)
    return _against_reference(payload, feeds, got) if mode == "reference" else ("ok", "")


def _against_reference(payload: bytes, feeds: dict, got: dict) -> tuple[str, str]:
    """Run onnx.reference too; "differs" when an output's error ratio (as ``compare`` scales it) passes 1."""
    from onnx.reference import ReferenceEvaluator

    import onnxgraph
    from onnxgraph.debug.layerwise import error_ratio, value_tolerance
    from onnxgraph.runtime.compare import compare_arrays, half_precision_of

    names = list(got)
    try:
        expected = dict(zip(names, ReferenceEvaluator(onnx.load_from_string(payload)).run(names, feeds)))
    except Exception as exc:  # noqa: BLE001 - the reference evaluator raises many types
        return "reference", one_line(exc)
    half = half_precision_of(onnxgraph.load(payload))
    for name, want in expected.items():
        if not isinstance(want, np.ndarray):
            continue
        rtol, atol = value_tolerance(half, want.dtype)
        with np.errstate(all="ignore"):
            c = compare_arrays(name, want, got[name], (rtol, atol), mixed_floats=True)
        if error_ratio(c, want, rtol, atol) > 1:
            off = c.note or f"max abs error {c.max_abs:.3g}, {c.mismatches}/{c.size} values off"
            return "differs", f"output '{name}': {off}"
    return "ok", ""


_ORT_STATUS = re.compile(r"^\[ONNXRuntimeError\] : \d+ : (\w+) :")


def _detail(exc: BaseException) -> str:
    """onnxruntime's failure in one line, led by its status name (``NOT_IMPLEMENTED: ...``): a reduced
    model must fail with the same status as the original."""
    status = _ORT_STATUS.match(str(exc).strip())
    return f"{status[1]}: {one_line(exc)}" if status else one_line(exc)
