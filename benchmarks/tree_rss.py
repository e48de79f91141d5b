"""Peak resident memory of a process tree: the SUM over a command and every process it starts.

The kernel's figure for a child (``wait4``'s ``ru_maxrss``, what ``/usr/bin/time`` prints) is the
largest of the process and each child it waited for, never their sum: a command whose onnxruntime
session lives in a child process would look smaller than it is. :class:`TreePeak` samples the sum of
``VmRSS`` over the tree instead (every 20 ms by default; a peak shorter than that can be missed, and
file pages shared between processes are counted once per process).
"""

from __future__ import annotations

import os
import threading


def _children() -> dict[int, list[int]]:
    """pid -> its child pids, for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
        tree.setdefault(parent, []).append(int(entry))
    return tree


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(root: int) -> int:
    """The summed resident memory (bytes) of ``root`` and all its descendants now."""
    tree, total, stack = _children(), 0, [root]
    while stack:
        pid = stack.pop()
        total += _rss_bytes(pid)
        stack.extend(tree.get(pid, ()))
    return total


class TreePeak:
    """Samples :func:`tree_rss` of ``root`` in a thread until :meth:`stop`; :attr:`peak` is the largest sum."""

    def __init__(self, root: int, interval: float = 0.02) -> None:
        self.root, self.interval, self.peak = root, interval, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, tree_rss(self.root))
            self._done.wait(self.interval)

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._done.set()
        self._thread.join()
        return self.peak
