"""The ``onnxgraph`` console script and ``python -m onnxgraph``: interrupts handled before anything loads.

Importing the command line (click, the command modules) takes a few hundred milliseconds; a Ctrl-C
then would print a Python ``KeyboardInterrupt`` traceback. So importing this module, the first thing
both entry points do, makes SIGINT print one line (``interrupted (SIGINT)``) and exit 130 at once:
nothing has been written yet, so there is nothing to clean up. When a command starts, the root
group (``cli/errors.py``) hands SIGINT back to Python's ``KeyboardInterrupt``
(:func:`hand_over_interrupts`), so the command's ``finally`` blocks and atomic writes clean up and
it exits 130 with the same line.

Remaining window: the interpreter's own start-up and ``import onnxgraph`` (the package's
``__init__``, a few milliseconds) run before this module; a SIGINT there ends Python as Python
does (a ``KeyboardInterrupt`` traceback, or exit status -2 before Python installs its handler).
A SIGINT the shell told the process to ignore (a background job) stays ignored.
"""

from __future__ import annotations

import os
import signal


def _interrupted_during_start_up(signum: int, frame: object) -> None:
    os.write(2, f"interrupted ({signal.Signals(signum).name})\n".encode())
    os._exit(128 + signum)


def hand_over_interrupts() -> None:
    """From here on SIGINT raises ``KeyboardInterrupt`` again (the command line cleans up and exits 130)."""
    if signal.getsignal(signal.SIGINT) is _interrupted_during_start_up:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_during_start_up)


def main() -> None:
    """Console-script entry point: the ``onnxgraph`` command line."""
    from onnxgraph.cli import main as command_line

    command_line()
