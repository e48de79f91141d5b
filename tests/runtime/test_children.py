"""Child processes die with the command that started them, even when it is killed with SIGKILL
(onnxgraph/children.py: ``prctl(PR_SET_PDEATHSIG)`` on Linux, nothing elsewhere)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import model_builders as build
import onnx
import pytest

from onnxgraph import children

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")

PARENTS = {
    # the onnxruntime check child, held in session creation by the test hook
    "isolated": """
        os.environ["ONNXGRAPH_TEST_CRASH"] = "hang"
        from onnxgraph.runtime.isolated import run_isolated
        run_isolated(MODEL, {}, timeout=600)
    """,
    # reduce's check worker (multiprocessing, spawn)
    "reduce worker": """
        from onnxgraph.debug.checks import WorkerCheck
        WorkerCheck("onnxruntime")._start()
        time.sleep(600)
    """,
    # Graphviz for `viz -o x.svg`, here a stand-in `dot` that never ends
    "viz dot": """
        from onnxgraph.viz.dot import render_svg
        render_svg("digraph {}")
    """,
}


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, ppid = f.read().rsplit(")", 1)[1].split()[:2]
        except OSError:
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@linux_only
@pytest.mark.parametrize("kind", list(PARENTS))
def test_children_die_when_the_parent_is_killed(tmp_path, kind):
    model = tmp_path / "m.onnx"
    onnx.save(build.mlp((4, 3)), model)
    fake_dot = tmp_path / "dot"
    fake_dot.write_text("#!/bin/sh\nexec sleep 600\n")
    fake_dot.chmod(0o755)
    script = f"import os, time\nMODEL = {str(model)!r}\n" + textwrap.dedent(PARENTS[kind])
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not kids and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
            kids = _children(parent.pid)
        assert kids, f"{kind}: the parent started no child (exit {parent.returncode})"
        time.sleep(0.5)  # past the child's start, where the request is made
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in kids) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in kids if _alive(pid)]
    for pid in left:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{kind}: children still running 5 s after the parent was killed"


def test_nothing_to_do_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert children.parent_death_hook() is None
    children.die_with_parent(os.getppid())  # a no-op: this process keeps running
