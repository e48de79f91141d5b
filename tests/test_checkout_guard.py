"""The conftest guard recognises a mixed-up install (onnxgraph and its sub-packages from two checkouts)."""

from __future__ import annotations

import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_suite_conftest", os.path.join(os.path.dirname(__file__), "conftest.py")
)
conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(conftest)


def test_a_source_checkout_and_an_installed_wheel_pass(tmp_path):
    source = {"onnxgraph.optimizers": str(tmp_path / "a" / "optimizers"), "onnxgraph.cli": str(tmp_path / "a" / "cli")}
    assert conftest.split_checkout(str(tmp_path / "a" / "onnxgraph"), source) is None
    wheel = tmp_path / "site-packages" / "onnxgraph"
    installed = {"onnxgraph.optimizers": str(wheel / "optimizers"), "onnxgraph.cli": str(wheel / "cli")}
    assert conftest.split_checkout(str(wheel), installed) is None


def test_two_checkouts_are_refused(tmp_path):
    mixed = {"onnxgraph.optimizers": str(tmp_path / "b" / "optimizers"), "onnxgraph.cli": str(tmp_path / "a" / "cli")}
    problem = conftest.split_checkout(str(tmp_path / "a" / "onnxgraph"), mixed)
    assert problem is not None and "onnxgraph.optimizers" in problem and "two checkouts" in problem


def test_this_run_is_not_mixed():
    import onnxgraph
    import onnxgraph.cli
    import onnxgraph.optimizers

    found = {name: os.path.dirname(__import__(name, fromlist=["_"]).__file__) for name in conftest.SUBPACKAGES}
    assert conftest.split_checkout(os.path.dirname(onnxgraph.__file__), found) is None
