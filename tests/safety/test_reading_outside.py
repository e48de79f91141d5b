"""External data is read only from the model's own folder, never through symbolic links (issue 14)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import onnxgraph
from onnxgraph.errors import ModelLoadError

SECRET = np.full(16, 7.0, np.float32).tobytes()  # 64 bytes, the size of the weight


@pytest.fixture
def linked(tmp_path, write_model):
    """model/model.onnx whose data file model/w.data is a symbolic link to ../outside/secret.bin."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.bin").write_bytes(SECRET)
    (tmp_path / "model").mkdir()
    path = write_model(tmp_path / "model" / "model.onnx", "w.data")
    os.remove(tmp_path / "model" / "w.data")
    os.symlink("../outside/secret.bin", tmp_path / "model" / "w.data")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ("convert",),
        ("convert", "--inline-data"),
        ("convert", "--fp16", "--no-verify"),
        ("convert", "--text"),
        ("optimize", "--no-verify"),
        ("grad", "--vjp"),
        ("viz",),
        ("info",),
    ],
    ids=["convert", "inline", "fp16", "onnxtxt", "optimize", "grad", "viz", "info"],
)
def test_symlink_external_data_refused(args, linked, tmp_path, run):
    command, *options = args
    out = tmp_path / ("leaked.onnxtxt" if "--text" in options else "leaked.html" if command == "viz" else "leaked.onnx")
    options = [o for o in options if o != "--text"]
    outputs = [] if command == "info" else ["-o", out]
    result = run(command, linked, *outputs, *options)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "tensor 'w'" in result.stderr and "'w.data' is reached through a symbolic link" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["model", "outside"]


def test_symlinked_folder_refused(tmp_path, write_model):
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "w.data").write_bytes(SECRET)
    (tmp_path / "model").mkdir()
    os.symlink("../outside", tmp_path / "model" / "weights")
    path = write_model(tmp_path / "model" / "m.onnx", "weights/w.data", data_path=tmp_path / "outside" / "w.data")
    with pytest.raises(ModelLoadError, match="reached through a symbolic link"):
        onnxgraph.load(path)


@pytest.mark.parametrize("location", ["../outside/secret.bin", "{abs}"])
def test_external_data_outside_folder_refused(location, tmp_path, write_model):
    (tmp_path / "outside").mkdir()
    secret = tmp_path / "outside" / "secret.bin"
    (tmp_path / "model").mkdir()
    location = location.format(abs=secret)
    path = write_model(tmp_path / "model" / "m.onnx", location, data_path=secret)
    secret.write_bytes(SECRET)
    with pytest.raises(ModelLoadError, match="tensor 'w'.*lies outside the model's folder"):
        onnxgraph.load(path)
    loaded = onnxgraph.load(path, allow_external_data_outside=True)
    assert loaded.graph.initializers["w"].const_value.numpy().tobytes() == SECRET


def test_allow_external_data_outside_reads_it(linked, tmp_path, run):
    out = tmp_path / "copy.onnx"
    result = run("convert", linked, "-o", out, "--inline-data", "--allow-external-data-outside")
    assert result.exit_code == 0, result.output
    assert onnxgraph.load(out).graph.initializers["w"].const_value.numpy().tobytes() == SECRET


def test_allow_external_data_outside_is_documented_as_unsafe(run):
    for command in ("convert", "optimize", "grad", "info", "viz"):
        text = " ".join(run(command, "--help").stdout.split())
        assert "--allow-external-data-outside" in text and "unsafe" in text, command
