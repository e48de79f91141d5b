"""File-system helpers: atomic writes that never leave a partial file behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path`` for writing and rename it over ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left exactly as it was.
    """
    group = AtomicFileGroup()
    try:
        with group.open(path) as f:
            yield f
        group.commit()
    except BaseException:
        group.discard()
        raise


def _mode_for(path: str) -> int:
    """The permissions a new file at ``path`` would get: an existing file's, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


class AtomicFileGroup:
    """Several files written to temporary names and renamed together once all are complete.

    Used when a model and its external-data file must appear together or not at all.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, str]] = []

    def open(self, path: str | os.PathLike) -> BinaryIO:
        """Return a binary file object whose contents will land at ``path`` on :meth:`commit`."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
        self._pending.append((tmp, path))
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; a saved model is an ordinary file
        return os.fdopen(fd, "wb")

    def commit(self) -> None:
        """Rename every temporary file to its destination."""
        for tmp, path in self._pending:
            os.replace(tmp, path)
        self._pending.clear()

    def discard(self) -> None:
        """Remove every temporary file; the destinations are untouched."""
        for tmp, _ in self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()
