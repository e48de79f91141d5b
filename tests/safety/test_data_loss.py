"""No command destroys a file it reads, writes a file twice, or replaces a device (issue 14, "Data loss")."""

from __future__ import annotations

import os
import stat
import threading

import pytest

import onnxgraph
from onnxgraph.errors import OutputPathError
from onnxgraph.fsutil import atomic_write, write_target
from onnxgraph.pathguard import Output, check_outputs

MODEL_WRITERS = {
    "optimize": ("optimize",),
    "convert": ("convert",),
    "grad": ("grad", "--vjp"),
}


def _error_line(result) -> str:
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize("command", sorted(MODEL_WRITERS))
def test_output_is_input_data_file(command, tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    before = files(tmp_path)
    result = run(*MODEL_WRITERS[command], model, "-o", tmp_path / "m.onnx.data")
    assert result.exit_code == 2
    assert "refusing to overwrite the external data file 'm.onnx.data'" in _error_line(result)
    assert files(tmp_path) == before


@pytest.mark.parametrize("command", sorted(MODEL_WRITERS))
def test_output_data_file_is_input_data_file(command, tmp_path, write_model, run, files):
    model = write_model(tmp_path / "a.onnx", "b.onnx.data")  # saving b.onnx would write b.onnx.data
    before = files(tmp_path)
    result = run(*MODEL_WRITERS[command], model, "-o", tmp_path / "b.onnx")
    assert result.exit_code == 2
    assert "its external data file b.onnx.data" in _error_line(result)
    assert files(tmp_path) == before


def test_overwrite_never_replaces_input_data_file(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    before = files(tmp_path)
    result = run("optimize", model, "-o", model, "--overwrite")
    assert result.exit_code == 2 and "external data file 'm.onnx.data'" in _error_line(result)
    assert files(tmp_path) == before


def test_overwrite_still_replaces_an_inline_input_model(tmp_path, write_model, run):
    model = write_model(tmp_path / "m.onnx")
    result = run("convert", model, "-o", model, "--overwrite", "--opset", "18")
    assert result.exit_code == 0, result.output
    assert onnxgraph.load(model).opset_imports[""] == 18


def test_report_json_is_input(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx")
    report = tmp_path / "report.json"  # a JSON name (a model-like name is refused earlier) linked to the model
    os.link(model, report)
    before = files(tmp_path)
    result = run("optimize", model, "-o", tmp_path / "o.onnx", "--report-json", report)
    assert result.exit_code == 2 and "--json" in _error_line(result)
    assert "refusing to overwrite the input model" in result.stderr
    assert files(tmp_path) == before  # nothing written, o.onnx included


def test_report_json_is_output(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx")
    out = tmp_path / "o.onnx"
    out.write_bytes(b"keep")
    report = tmp_path / "report.json"
    os.link(out, report)
    before = files(tmp_path)
    result = run("optimize", model, "-o", out, "--report-json", report)
    assert result.exit_code == 2 and "are the same file" in _error_line(result)
    assert files(tmp_path) == before


def test_report_json_is_the_output_data_file(tmp_path, write_model, run):
    model = write_model(tmp_path / "m.onnx")
    report = tmp_path / "report.json"
    report.symlink_to(tmp_path / "o.onnx.data")
    result = run("optimize", model, "-o", tmp_path / "o.onnx", "--report-json", report)
    assert result.exit_code == 2 and "are the same file" in _error_line(result)


def test_viz_output_is_input(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "M.html")
    before = files(tmp_path)
    result = run("viz", model, "-o", model)
    assert result.exit_code == 2 and "refusing to overwrite the input model" in _error_line(result)
    assert files(tmp_path) == before


def test_viz_output_is_node_data(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx")
    data = tmp_path / "figures.html"
    data.write_text("{}")
    before = files(tmp_path)
    result = run("viz", model, "-o", data, "--node-data", data)
    assert result.exit_code == 2 and "refusing to overwrite the input" in _error_line(result)
    assert files(tmp_path) == before


def test_bench_json_is_input(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    report = tmp_path / "bench.json"
    os.link(tmp_path / "m.onnx.data", report)
    before = files(tmp_path)
    result = run("bench", model, "--runs", "1", "--warmup", "0", "--json", report)
    assert result.exit_code == 2 and "refusing to overwrite the external data file" in _error_line(result)
    assert files(tmp_path) == before


def test_hard_link_to_input_data_file(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    os.link(tmp_path / "m.onnx.data", tmp_path / "other.onnx")
    before = files(tmp_path)
    result = run("convert", model, "-o", tmp_path / "other.onnx")
    assert result.exit_code == 2 and "refusing to overwrite" in _error_line(result)
    assert files(tmp_path) == before


def test_symlink_to_input_model(tmp_path, write_model, run, files):
    model = write_model(tmp_path / "m.onnx")
    os.symlink("m.onnx", tmp_path / "link.onnx")
    before = files(tmp_path)
    result = run("convert", model, "-o", tmp_path / "link.onnx")
    assert result.exit_code == 2 and "--overwrite" in _error_line(result)
    assert files(tmp_path) == before


def test_dev_null_not_replaced(tmp_path, write_model, run):
    """Through a link in tmp_path, so that a regression replaces the link rather than the device itself."""
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    os.symlink("/dev/null", tmp_path / "out.onnx")
    result = run("convert", model, "-o", tmp_path / "out.onnx")
    assert result.exit_code == 0, result.output
    assert os.readlink(tmp_path / "out.onnx") == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not os.path.exists(tmp_path / "out.onnx.data") and not os.path.exists("/dev/null.data")
    assert write_target("/dev/null") == ("/dev/null", True)


@pytest.mark.parametrize("stream", ["/dev/stdout", "/dev/stderr", "/dev/fd/1", "/proc/self/fd/2"])
def test_standard_streams_are_written_through(stream):
    assert write_target(stream) == (stream, True)


def test_report_json_dev_stdout_not_replaced(tmp_path, write_model, run):
    model = write_model(tmp_path / "m.onnx")
    os.symlink("/dev/stdout", tmp_path / "report.json")
    result = run("optimize", model, "-o", tmp_path / "o.onnx", "--report-json", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert os.readlink(tmp_path / "report.json") == "/dev/stdout"
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "o.onnx", "report.json"]


def test_bench_json_dev_stderr_not_replaced(tmp_path, write_model, run):
    model = write_model(tmp_path / "m.onnx")
    os.symlink("/dev/stderr", tmp_path / "bench.json")
    result = run("bench", model, "--runs", "1", "--warmup", "0", "--json", tmp_path / "bench.json")
    assert result.exit_code == 0, result.output
    assert os.readlink(tmp_path / "bench.json") == "/dev/stderr"


def test_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    with atomic_write(fifo) as f:
        f.write(b"payload")
    reader.join(timeout=10)
    assert received == [b"payload"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]


def test_symlinked_output_replaces_the_link_not_its_target(tmp_path, write_model, run):
    """Like onnx and onnxruntime, the model's folder is the folder of the path given: the data goes there."""
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    (tmp_path / "target.onnx").write_bytes(b"someone else's file")
    os.symlink("target.onnx", tmp_path / "out.onnx")
    result = run("convert", model, "-o", tmp_path / "out.onnx", "--external-data", "--size-threshold", "0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "target.onnx").read_bytes() == b"someone else's file"
    assert not os.path.islink(tmp_path / "out.onnx")
    loaded = onnxgraph.load(tmp_path / "out.onnx")
    assert loaded.graph.initializers["w"].const_value.external_path == str(tmp_path / "out.onnx.data")


def test_data_file_mode_matches_model(tmp_path, write_model, run):
    model = write_model(tmp_path / "m.onnx", "m.onnx.data")
    out = tmp_path / "o.onnx"
    (tmp_path / "o.onnx.data").write_bytes(b"old")
    os.chmod(tmp_path / "o.onnx.data", 0o600)  # as an older version wrote it
    umask = os.umask(0o022)
    try:
        result = run("convert", model, "-o", out, "--external-data", "--size-threshold", "0")
    finally:
        os.umask(umask)
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "o.onnx.data").st_mode) == 0o644


@pytest.mark.parametrize(
    "args",
    [
        ("optimize", "{m}", "-o", "{missing}"),
        ("optimize", "{m}", "-o", "{ok}", "--report-json", "{missing_json}"),
        ("convert", "{m}", "-o", "{missing}"),
        ("grad", "{m}", "--vjp", "-o", "{missing}"),
        ("viz", "{m}", "-o", "{missing_html}"),
        ("bench", "{m}", "--json", "{missing_json}"),
    ],
    ids=["optimize", "optimize-report", "convert", "grad", "viz", "bench"],
)
def test_missing_output_folder_fails_before_any_work(args, tmp_path, write_model, run, monkeypatch):
    import onnxgraph.autodiff
    import onnxgraph.optimizers

    def no_work(*args, **kwargs):
        raise AssertionError("the command started working")

    for module, name in ((onnxgraph.optimizers, "optimize"), (onnxgraph.autodiff, "build_gradient")):
        monkeypatch.setattr(module, name, no_work)
    names = {
        "m": write_model(tmp_path / "m.onnx"),
        "ok": str(tmp_path / "o.onnx"),
        "missing": str(tmp_path / "missing" / "x.onnx"),
        "missing_html": str(tmp_path / "missing" / "x.html"),
        "missing_json": str(tmp_path / "missing" / "x.json"),
    }
    result = run(*(a.format(**names) for a in args))
    assert result.exit_code == 2 and "does not exist" in _error_line(result)
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_unwritable_output_folder_fails_before_any_work(tmp_path, write_model, run):
    model = write_model(tmp_path / "m.onnx")
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    try:
        result = run("convert", model, "-o", locked / "o.onnx")
    finally:
        os.chmod(locked, 0o700)
    assert result.exit_code == 2 and "is not writable" in _error_line(result)


def test_output_is_a_folder(tmp_path):
    """The command line refuses folders itself (click.Path); the library check covers other callers."""
    (tmp_path / "o.onnx").mkdir()
    with pytest.raises(OutputPathError, match="is a folder"):
        check_outputs([Output(str(tmp_path / "o.onnx"), "-o", model=True)])
