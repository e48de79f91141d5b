"""Output helpers shared by commands: JSON reports, consoles, progress, human-readable sizes, and text safe
for a terminal."""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console

_UNBOUNDED_WIDTH = 100_000
"""Console width when stdout is not a terminal: tables keep every name whole for grep and files."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``text`` with control characters written as escapes (``\\n``, ``\\x1b``).

    Names in models are arbitrary strings: a line feed would split a one-line error, and an escape
    sequence would drive the user's terminal. Every message and table cell that shows them goes
    through this.
    """
    return _CONTROL.sub(_escape_one, str(text))


def _escape_one(match: re.Match) -> str:
    char = match[0]
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}")


def escape(text: object) -> str:
    """``text`` for rich output: :func:`printable`, then rich markup escaped (``[`` is literal)."""
    from rich.markup import escape as escape_markup

    return escape_markup(printable(text))


def write_json(data: dict, path: str) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically, or to stdout when ``path`` is ``-``.

    JSON has no infinity or NaN: such floats (an error of a missing output, a diverged value) are
    written as the strings ``"inf"``, ``"-inf"`` and ``"nan"``.
    """
    text = json.dumps(_finite_json(data), indent=2, allow_nan=False) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    from onnxgraph.fsutil import atomic_write

    with atomic_write(path) as f:
        f.write(text.encode())


def _finite_json(value: object) -> object:
    """``value`` with every non-finite float, however deep, replaced by its text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {key: _finite_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(item) for item in value]
    return value


def emit(data: dict, as_json: str | None, render: Callable[[], None]) -> None:
    """Show a command's result the ``--json [FILE]`` way.

    Args:
        data: the JSON-ready result.
        as_json: the option's value: None prints tables, "-" prints only the JSON on stdout, a path
            prints tables and writes the JSON there.
        render: prints the tables.
    """
    if as_json != "-":
        render()
    if as_json:
        write_json(data, as_json)


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def counted(number: int, noun: str) -> str:
    """``"1 output"``, ``"2 outputs"``: a count with its noun in the right number."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def stdout_console() -> Console:
    """A rich console on stdout: the terminal's width on a terminal, otherwise wide enough that tables
    never wrap or truncate names (piped output is read by grep and scripts)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=_UNBOUNDED_WIDTH)


@contextlib.contextmanager
def progress(first: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the current phase on stderr, shown only when stderr is a terminal.

    Yields:
        A function that replaces the phase text (``update("writing out.onnx")``).
    """
    from rich.console import Console

    with Console(stderr=True).status(escape(first), spinner="dots") as status:
        yield lambda text: status.update(escape(text))


def save_checked(
    model,
    output: str,
    *,
    source: str | None,
    ran_on_onnxruntime: bool = False,
    input_shapes: dict | None = None,
    **save_options,
) -> str:
    """Check the model a command is about to write, then write it (nothing is written on failure).

    Every command that writes a model goes through here: see
    :func:`onnxgraph.runtime.written.check_before_write` for what is checked (``source=None`` skips
    running the result on onnxruntime, for ``--no-verify``).

    Returns:
        A note on what running the result took ("" usually).

    Raises:
        CheckFailed: the result fails onnx.checker or does not run where the input runs (exit 1).
    """
    from onnxgraph.cli.errors import CheckFailed
    from onnxgraph.runtime.written import ResultCheckFailed, check_before_write
    from onnxgraph.serde.fileio import save

    try:
        note = check_before_write(
            model, source=source, ran_on_onnxruntime=ran_on_onnxruntime, input_shapes=input_shapes
        )
    except ResultCheckFailed as exc:
        raise CheckFailed(f"{output}: not written: {exc}") from exc
    save(model, output, **save_options)
    return note
