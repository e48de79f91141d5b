"""Turning exceptions into one clear line and the documented exit code.

The click exceptions below are the command line's own (they print and exit); every library exception
lives in :mod:`onnxgraph.errors`.
"""

from __future__ import annotations

import click

from onnxgraph.errors import OnnxGraphError, one_line

EXIT_FAILED = 1
"""A verification or comparison failed."""
EXIT_BAD_INPUT = 2
"""Bad input or usage."""
EXIT_INTERNAL = 3
"""An internal error: a bug of onnxgraph's (a broken IR invariant or any unexpected exception)."""


class BadInput(click.ClickException):
    """A user error: printed as one line, exit code 2."""

    exit_code = EXIT_BAD_INPUT

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class CheckFailed(click.ClickException):
    """A verification or comparison failed: printed as one line, exit code 1."""

    exit_code = EXIT_FAILED

    def show(self, file=None) -> None:
        click.echo(f"failed: {self.format_message()}", err=True)


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
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OnnxGraphError as exc:
            if _debug(ctx):
                raise
            raise BadInput(one_line(exc)) from exc
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if _debug(ctx):
                raise
            if _from_onnxruntime(exc):  # onnxruntime rejecting the user's model is bad input
                raise BadInput(f"onnxruntime cannot load or run the model: {one_line(exc)}") from exc
            name, line = type(exc).__name__, one_line(exc)
            raise InternalFailure(line if line == name else f"{name}: {line}") from exc


def _from_onnxruntime(exc: Exception) -> bool:
    return type(exc).__module__.startswith("onnxruntime")


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))
