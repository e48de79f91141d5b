"""Turning exceptions into one clear line and the documented exit code."""

from __future__ import annotations

import click

from onnxgraph.errors import OnnxGraphError

EXIT_FAILED = 1
"""A verification or comparison failed."""
EXIT_BAD_INPUT = 2
"""Bad input or usage."""


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


class CommandGroup(click.Group):
    """A click group that maps library errors to one-line messages unless ``--debug`` is given."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except OnnxGraphError as exc:
            if _debug(ctx):
                raise
            raise BadInput(str(exc)) from exc
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if _debug(ctx):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckFailed(f"internal error: {message} (rerun with --debug for a traceback)") from exc


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))
