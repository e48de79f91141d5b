"""The installed package matches the source tree (a missing package would only show on a fresh install)."""

from __future__ import annotations

import os
import sys

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]


def _source_packages() -> set[str]:
    mapping = {v: k for k, v in _config()["package-dir"].items()}
    found = set()
    for top, name in mapping.items():
        for folder, _dirs, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files:
                rel = os.path.relpath(folder, os.path.join(ROOT, top))
                found.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    return found


def test_every_source_package_is_listed_in_pyproject():
    assert _source_packages() == set(_config()["packages"])


@pytest.mark.parametrize("name", sorted(_source_packages()))
def test_every_package_imports_from_the_installed_distribution(name):
    module = __import__(name, fromlist=["_"])
    assert module.__name__ == name


def _project() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def test_license_is_an_spdx_expression_with_its_file():
    project = _project()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE")) as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_cuda_extra_installs_onnxruntime_gpu_with_its_libraries():
    (requirement,) = _project()["optional-dependencies"]["cuda"]
    assert requirement.startswith("onnxruntime-gpu[cuda,cudnn]")


def test_the_package_is_marked_typed():
    assert "py.typed" in _config()["package-data"]["onnxgraph"]
    assert os.path.isfile(os.path.join(ROOT, "onnxgraph", "py.typed"))


def test_the_sdist_carries_tests_models_and_docs():
    """``python -m build --sdist`` follows MANIFEST.in; the lines that take the test suite along."""
    with open(os.path.join(ROOT, "MANIFEST.in")) as f:
        lines = {line.strip() for line in f}
    assert {"graft tests", "graft models", "graft docs", "graft benchmarks"} <= lines


def test_entry_points_go_through_the_interrupt_safe_console_module():
    """The console script and ``python -m onnxgraph`` import onnxgraph.console first, which handles
    Ctrl-C during start-up (tests/safety/test_signals.py)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert tomllib.load(f)["project"]["scripts"] == {"onnxgraph": "onnxgraph.console:main"}
    with open(os.path.join(ROOT, "onnxgraph", "__main__.py")) as f:
        assert "from onnxgraph.console import main" in f.read()
