"""Suite-wide checks and fixtures.

- A guard that stops the run at once when ``onnxgraph`` and its sub-packages ``onnxgraph.optimizers``
  and ``onnxgraph.cli`` come from two different checkouts (an editable install of another worktree
  mixed with this one would test code nobody meant to test).
- Counts of what the ONNX-suite tests compared, printed at the end of the run. Cases that compare
  nothing (onnxruntime itself cannot run them) are skipped with the reason instead.
- models/build.py is importable by every test module as ``model_builders`` (``build`` is also a
  PyPI package, so it gets a name of its own).
- Tests run from an empty folder, not the checkout: a subprocess started with ``python -m onnxgraph``
  or ``python -c`` puts its working folder first on sys.path, and the checkout's onnxgraph/ folder
  lacks the ``cli`` and ``optimizers`` sub-packages that setuptools maps in (``pip install .``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import Counter

import pytest

MODEL_BUILDERS = "model_builders"


def _register_model_builders() -> None:
    """Load models/build.py once as the module ``model_builders`` (``import model_builders``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "build.py")
    spec = importlib.util.spec_from_file_location(MODEL_BUILDERS, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODEL_BUILDERS] = module
    spec.loader.exec_module(module)


_register_model_builders()

SUBPACKAGES = {"onnxgraph.optimizers": "optimizers", "onnxgraph.cli": "cli"}
"""Sub-packages that live at the top level of a checkout (setuptools package-dir) -> their folder."""


def split_checkout(package_dir: str, subpackage_dirs: dict[str, str]) -> str | None:
    """Why the sub-packages do not belong with ``package_dir`` (the onnxgraph package's folder), or None.

    A sub-package belongs when it sits inside the package (an installed wheel) or beside it in the same
    checkout (the source tree, ``pip install -e``).
    """
    package_dir = os.path.realpath(package_dir)
    checkout = os.path.dirname(package_dir)
    for name, found in subpackage_dirs.items():
        folder = SUBPACKAGES[name]
        expected = (os.path.join(package_dir, folder), os.path.join(checkout, folder))
        if os.path.realpath(found) not in expected:
            return (
                f"onnxgraph comes from {package_dir} but {name} from {found}: two checkouts are mixed "
                f"(reinstall with `pip install -e .` in the checkout under test)"
            )
    return None


def pytest_configure(config):
    import onnxgraph

    # find_spec locates the sub-packages without running them (mixed versions may not even import)
    found = {name: os.path.dirname(importlib.util.find_spec(name).origin) for name in SUBPACKAGES}
    problem = split_checkout(os.path.dirname(onnxgraph.__file__), found)
    if problem:
        pytest.exit(problem, returncode=4)


_COUNTS: Counter[str] = Counter()


@pytest.fixture
def counts() -> Counter[str]:
    """A run-wide counter; its entries are printed in the terminal summary."""
    return _COUNTS


def pytest_terminal_summary(terminalreporter):
    if _COUNTS:
        terminalreporter.section("ONNX test-suite counts")
        for key in sorted(_COUNTS):
            terminalreporter.write_line(f"{key}: {_COUNTS[key]}")


@pytest.fixture(autouse=True, scope="session")
def _outside_the_checkout(tmp_path_factory):
    """Run the session with an empty working folder, so subprocesses import the installed package."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)
