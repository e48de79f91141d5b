"""Atomic writes land whole, with ordinary permissions, or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from onnxgraph.fsutil import atomic_write


def test_new_files_get_the_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "f.bin") as f:
            f.write(b"data")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "f.bin").st_mode) == 0o644


def test_replacing_a_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    with atomic_write(path) as f:
        f.write(b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_an_error_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(ValueError), atomic_write(path) as f:
        f.write(b"half")
        raise ValueError("boom")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]
