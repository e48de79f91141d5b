"""Turning exceptions into one clear line and the documented exit code."""

from __future__ import annotations

import signal
import warnings

import click

from onnxgraph.cli.output import printable
from onnxgraph.errors import OnnxGraphError

EXIT_FAILED = 1
"""A verification or comparison failed."""
EXIT_BAD_INPUT = 2
"""Bad input or usage."""
EXIT_SIGNAL_BASE = 128
"""Interrupted: 128 plus the signal number (130 SIGINT, 143 SIGTERM, 129 SIGHUP), as shells report it."""


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


class SignalInterrupt(KeyboardInterrupt):
    """SIGTERM or SIGHUP raised as an exception, so that ``finally`` blocks and atomic writes clean up."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class Interrupted(click.ClickException):
    """The command was interrupted by a signal: one line, exit code 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted ({signal.Signals(signum).name})")
        self.exit_code = EXIT_SIGNAL_BASE + signum

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


class CommandGroup(click.Group):
    """A click group that maps library errors to one-line messages unless ``--debug`` is given."""

    def invoke(self, ctx: click.Context):
        try:
            with warnings.catch_warnings():
                # onnx.reference computes in numpy and warns on overflow (fp16 verification): noise
                warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"onnx\.reference")
                return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OnnxGraphError as exc:
            if _debug(ctx):
                raise
            raise BadInput(str(exc)) from exc
        except KeyboardInterrupt as exc:
            raise Interrupted(getattr(exc, "signum", signal.SIGINT)) from None
        except Exception as exc:
            if _debug(ctx):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckFailed(f"internal error: {message} (rerun with --debug for a traceback)") from exc


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))
