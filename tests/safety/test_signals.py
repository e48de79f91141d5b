"""Interrupts end a command with one line, exit 128 + the signal number, and no temporary files (issues 11, 14).

These run the command line in a child process (signals need one); each takes about two seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

# The child converts a model with its weights in external data, and stops in the middle of saving
# (after the temporary data file is open, before the model file is written) until it is signalled.
CHILD = """
import os, sys, time
import onnxgraph.serde.fileio as fileio

real_export = fileio.export_model
marker, model, out = sys.argv[1:4]

def slow_export(*args, **kwargs):
    # the check before writing exports the model too; stop only once save's temporary file exists
    if any(name.endswith(".tmp") for name in os.listdir(os.path.dirname(out))):
        open(marker, "w").close()  # tell the parent that saving has begun
        time.sleep(60)
    return real_export(*args, **kwargs)

fileio.export_model = slow_export
sys.argv = ["onnxgraph", "convert", model, "-o", out, "--external-data", "--size-threshold", "0"]
from onnxgraph.cli import main
main()
"""


def _interrupt_while_saving(tmp_path, write_model, signum: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "saving"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(marker), model, str(out_dir / "o.onnx")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not marker.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), child.communicate()
    assert any(name.endswith(".tmp") for name in os.listdir(out_dir))  # the save really was under way
    child.send_signal(signum)
    stdout, stderr = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr), sorted(os.listdir(out_dir))


@pytest.mark.parametrize(
    "signum,code",
    [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)],
    ids=["SIGTERM", "SIGINT", "SIGHUP"],
)
def test_sigterm_during_save_leaves_no_temp(signum, code, tmp_path, write_model):
    result, left = _interrupt_while_saving(tmp_path, write_model, signum)
    assert result.returncode == code, result.stderr
    assert result.stderr == f"interrupted ({signal.Signals(signum).name})\n"
    assert left == []  # neither the temporary data file nor a partial model


def test_interrupt_never_exits_1(tmp_path, write_model, run, monkeypatch):
    """In-process: a KeyboardInterrupt anywhere in a command becomes exit 130, not click's "Aborted!" exit 1."""
    import onnxgraph.optimizers

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(onnxgraph.optimizers, "optimize", interrupted)
    result = run("optimize", write_model(tmp_path / "m.onnx"), "-o", tmp_path / "o.onnx")
    assert result.exit_code == 130 and result.stderr == "interrupted (SIGINT)\n"


def test_nohup_keeps_sighup_ignored():
    """Installing the handlers leaves a signal the user chose to ignore (nohup) ignored."""
    code = (
        "import signal\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from onnxgraph.cli.errors import raise_on_termination\n"
        "raise_on_termination()\n"
        "assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN\n"
        "assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_import_is_light():
    """`import onnxgraph.cli` loads neither numpy nor onnx: start-up, where an interrupt could only
    print a traceback, stays short."""
    code = "import sys, onnxgraph.cli; print(sorted(m for m in ('numpy', 'onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_interrupt_during_commit_renames_both_files(tmp_path, monkeypatch):
    """A signal between renaming the data file and the model waits until both are in place."""
    from onnxgraph import fsutil

    class Stop(Exception):
        pass

    def stop(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGTERM, stop)
    real_replace = os.replace

    def replace_then_signal(src, dst):
        real_replace(src, dst)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(fsutil.os, "replace", replace_then_signal)
    group = fsutil.AtomicFileGroup()
    try:
        for name in ("m.onnx.data", "m.onnx"):
            with group.open(tmp_path / name) as f:
                f.write(name.encode())
        with pytest.raises(Stop):
            group.commit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "m.onnx.data"]
    assert (tmp_path / "m.onnx").read_bytes() == b"m.onnx"


# The console script as pip writes it from [project.scripts] (onnxgraph.console:main), with a line
# on stdout once the entry module is imported: delays count from there, past the interpreter's own
# start-up, the one window left (docs/architecture.md, onnxgraph/console.py).
CONSOLE = """
import os, sys
from onnxgraph.console import main
os.write(1, b"started\\n")
sys.exit(main())
"""


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.06, 0.15, 0.4])
def test_sigint_during_start_up_prints_one_line_and_exits_130(delay):
    """Early in start-up (importing click and the commands), in the command, or after it: one line and
    exit 130, or a clean exit when the command finished first; never a traceback, never exit 1."""
    model = os.path.join(os.path.dirname(__file__), "..", "..", "models", "transformer.onnx")
    child = subprocess.Popen(
        [sys.executable, "-c", CONSOLE, "info", model],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"started\n"
    time.sleep(delay)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    text = stderr.decode()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert (child.returncode, text) in ((130, "interrupted (SIGINT)\n"), (0, "")), (child.returncode, text)
