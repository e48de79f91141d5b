"""Turning exceptions into one clear line and the documented exit code.

The click exceptions below are the command line's own (they print and exit); every library exception
lives in :mod:`onnxgraph.errors`.
"""

from __future__ import annotations

import signal
import sys
import warnings

import click

from onnxgraph.cli.output import printable
from onnxgraph.errors import OnnxGraphError, SignalInterrupt, one_line

EXIT_FAILED = 1
"""A verification or comparison failed."""
EXIT_BAD_INPUT = 2
"""Bad input or usage."""
EXIT_SIGNAL_BASE = 128
"""Interrupted: 128 plus the signal number (130 SIGINT, 143 SIGTERM, 129 SIGHUP), as shells report it."""
EXIT_INTERNAL = 3
"""An internal error: a bug of onnxgraph's (a broken IR invariant or any unexpected exception)."""


class BadInput(click.ClickException):
    """A user error: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        click.echo(f"error: {printable(self.format_message())}", err=True)


class CheckFailed(click.ClickException):
    """A verification or comparison failed: printed as one line, exit code 1."""

    exit_code = EXIT_FAILED

    def show(self, file=None) -> None:
        click.echo(f"failed: {printable(self.format_message())}", err=True)


class Interrupted(click.ClickException):
    """The command was interrupted by a signal: one line, exit code 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted ({signal.Signals(signum).name})")
        # click declares exit_code a ClassVar, yet reads it from the instance: the code depends on the signal
        self.exit_code = EXIT_SIGNAL_BASE + signum  # type: ignore[misc]

    def show(self, file=None) -> None:
        click.echo(self.format_message(), err=True)


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into :class:`SignalInterrupt` (SIGINT already raises KeyboardInterrupt).

    Without this, those signals end the process on the spot and temporary files stay behind.
    """

    def handler(signum: int, frame) -> None:
        raise SignalInterrupt(signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) == signal.SIG_DFL:  # an ignored SIGHUP (nohup) stays ignored
            signal.signal(signum, handler)


class InternalFailure(click.ClickException):
    """A bug of ours: printed as one line asking for a report, exit code 3."""

    exit_code = EXIT_INTERNAL

    def show(self, file=None) -> None:
        click.echo(
            f"internal error: {self.format_message()}; please report it; rerun with --debug for the traceback",
            err=True,
        )


class CommandGroup(click.Group):
    """A click group that maps library errors to one-line messages unless ``--debug`` is given.

    User errors (:class:`~onnxgraph.errors.OnnxGraphError`, and onnxruntime's own exceptions, which
    reject the user's model) exit 2; internal errors (:class:`~onnxgraph.errors.InternalError`, such as a
    broken IR invariant, and any other unexpected exception) exit 3.
    """

    def invoke(self, ctx: click.Context):
        try:
            _hand_over_interrupts()
            with warnings.catch_warnings():
                # onnx.reference computes in numpy and warns on overflow (fp16 verification): noise
                warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"onnx\.reference")
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OnnxGraphError as exc:
            if _debug(ctx):
                raise
            # our own message, whole: names in it may hold line breaks, which BadInput shows escaped
            raise BadInput(str(exc).strip() or type(exc).__name__) from exc
        except KeyboardInterrupt as exc:
            raise Interrupted(getattr(exc, "signum", signal.SIGINT)) from None
        except Exception as exc:
            if _debug(ctx):
                raise
            if _from_onnxruntime(exc):  # onnxruntime rejecting the user's model is bad input
                raise BadInput(f"onnxruntime cannot load or run the model: {one_line(exc)}") from exc
            name, line = type(exc).__name__, one_line(exc)
            raise InternalFailure(line if line == name else f"{name}: {line}") from exc


def _hand_over_interrupts() -> None:
    """SIGINT raises KeyboardInterrupt again (mapped to exit 130 above) when the console entry point
    (:mod:`onnxgraph.console`) has held it through start-up; no-op otherwise (tests, library use)."""
    console = sys.modules.get("onnxgraph.console")
    if console is not None:
        console.hand_over_interrupts()


def _from_onnxruntime(exc: Exception) -> bool:
    return type(exc).__module__.startswith("onnxruntime")


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))
