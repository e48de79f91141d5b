"""File-system helpers: atomic writes that never leave a partial file behind and never replace a device."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from typing import BinaryIO

_SPECIAL_FOLDERS = ("/dev/", "/proc/")
"""Symbolic links here (``/dev/stdout``, ``/proc/self/fd/1``) stand for open files, not for paths."""
_MAX_LINKS = 40


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing and rename it over ``path`` on success.

    On any exception (an interrupt included) the temporary file is removed and ``path`` is left exactly
    as it was. A destination that is not a regular file is written through instead (see
    :func:`write_target`).
    """
    group = AtomicFileGroup()
    try:
        with group.open(path) as f:
            yield f
        group.commit()
    except BaseException:
        group.discard()
        raise


def write_target(path: str | os.PathLike) -> tuple[str, bool]:
    """Where writing ``path`` lands, and whether it is written through rather than replaced.

    A destination that exists and is not a regular file (``/dev/null``, a FIFO, a terminal), or that is
    reached through a symbolic link in ``/dev`` or ``/proc`` (``/dev/stdout``, ``/dev/fd/3``), is
    written through: opened and appended to, never replaced by another file. Any other destination is
    replaced by renaming a complete temporary file over it (a symbolic link to a regular file is
    replaced itself, as onnx and onnxruntime look for external data beside the path they are given).

    Returns:
        ``(absolute path, write_through)``.
    """
    path = os.path.abspath(os.fspath(path))
    hop = path
    for _ in range(_MAX_LINKS):
        if not os.path.islink(hop):
            break
        if hop.startswith(_SPECIAL_FOLDERS):
            return path, True
        hop = os.path.join(os.path.dirname(hop), os.readlink(hop))
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return path, False
    return path, not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def new_file_mode(path: str | os.PathLike) -> int:
    """The permissions a file written at ``path`` gets: an existing file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


_INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back until the block ends, so a model and its data file are
    renamed both or neither; a signal that arrives meanwhile is raised again right after.

    Python handlers run in the main thread only, so elsewhere (and for handlers not set from Python)
    nothing is deferred.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in _INTERRUPTS:
        handler = signal.getsignal(signum)
        if handler is not None:
            previous[signum] = signal.signal(signum, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in caught:
            signal.raise_signal(number)


class AtomicFileGroup:
    """Several files written to temporary names and renamed together once all are complete.

    Used when a model and its external-data file must appear together or not at all. A destination that
    :func:`write_target` says to write through is opened directly and needs no rename.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []

    def open(self, path: str | os.PathLike, *, mode: int | None = None) -> BinaryIO:
        """Return a binary file object whose contents will land at ``path`` on :meth:`commit`.

        Args:
            path: the destination.
            mode: permissions of the new file (default: :func:`new_file_mode` of the destination).
        """
        target, through = write_target(path)
        if through:
            return open(target, "ab")
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target))
        self._pending.append((tmp, target))
        try:
            os.chmod(tmp, new_file_mode(target) if mode is None else mode)  # mkstemp makes 0600
        except BaseException:
            os.close(fd)
            raise
        return os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Rename every temporary file to its destination (an interrupt waits until all are renamed)."""
        with _interrupts_deferred():
            for tmp, path in self._pending:
                os.replace(tmp, path)
            self._pending.clear()

    def discard(self) -> None:
        """Remove every temporary file; the destinations are untouched."""
        for tmp, _ in self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()


def copy_file_span(source: str, offset: int, length: int, dest: BinaryIO) -> bool:
    """Append ``length`` bytes of the file ``source`` from ``offset`` to ``dest``, in the kernel.

    The bytes never pass through this process's memory (``os.copy_file_range``), so copying weights
    costs no resident memory.

    Returns:
        False, with ``dest`` as it was, where the platform or the file systems cannot; the caller then
        copies through memory.
    """
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return False
    dest.flush()
    done = 0
    try:
        start = dest.tell()
        with open(source, "rb") as f:
            while done < length:
                n = copy(f.fileno(), dest.fileno(), length - done, offset + done)
                if n == 0:
                    raise OSError("short copy")
                done += n
    except OSError:
        if done:  # nothing to undo otherwise (and pipes or devices cannot seek)
            dest.seek(start)
            dest.truncate()
        return False
    dest.seek(0, os.SEEK_END)
    return True
