"""Child processes that do not outlive the command that started them.

A command killed with SIGKILL (the out-of-memory killer, ``kill -9``, a CI job's timeout) runs no
cleanup, so its children (an onnxruntime check in a child process, Graphviz, ``reduce``'s check
worker and ``--check`` command, mpiexec) would run on, holding memory and CPU. On Linux each child
asks the kernel to kill it when its parent ends (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); elsewhere
nothing is done.

Two ways in, for the two ways children start:

* ``subprocess``: pass ``preexec_fn=parent_death_hook()``; it runs in the child between fork and
  exec, and the request survives the exec.
* ``multiprocessing`` (spawn): call ``die_with_parent(parent_pid)`` first thing in the child's
  target, with the pid the parent passed.

Limits: the kernel sends the signal when the *thread* that started the child ends, so start
long-lived children from the main thread (onnxgraph's are); and it reaches the child only, not the
processes that child starts in turn (a ``--check`` shell's own children, unless the shell execs the
command, as ``sh -c 'one command'`` usually does).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, None elsewhere (or when libc cannot be loaded)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _request(prctl: Callable[..., int], parent: int) -> None:
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request: nobody would send the signal
        os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this process (SIGKILL) when its parent ends; nothing off Linux.

    Args:
        parent: the parent's pid, as the parent saw it (``os.getpid()`` there). When this process's
            parent is already another one (the parent ended before the request), it dies at once.
    """
    prctl = _prctl()
    if prctl is not None:
        _request(prctl, parent)


def parent_death_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess`` that makes the child die with this process (Linux), or
    None where there is nothing to do.

    libc is looked up here, in the parent, so the child runs only the ``prctl`` call between fork
    and exec.
    """
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()
    return lambda: _request(prctl, parent)
