"""docs/gradients.md's coverage table is generated from the registry and every rule is tested."""

from __future__ import annotations

import os

from op_specs import SPECS

from onnxgraph.autodiff import RULES
from onnxgraph.autodiff.coverage import main, render

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "gradients.md")


def _doc() -> str:
    with open(DOC, encoding="utf-8") as f:
        return f.read()


def test_committed_table_matches_the_registry():
    committed = _doc()
    assert committed == render(committed), "run python -m onnxgraph.autodiff.coverage"
    assert "| Conv | conv | X, W, B | rule |" in committed
    assert main(["--check", "--doc", DOC]) == 0


def test_stale_table_is_detected(tmp_path):
    stale = tmp_path / "gradients.md"
    stale.write_text(_doc().replace("| Abs |", "| Abz |"))
    assert main(["--check", "--doc", str(stale)]) == 1


TESTED_ELSEWHERE = {"If": "test_api.py::test_if_differentiates_the_taken_branch (needs subgraphs)"}
TESTED_ELSEWHERE["Loop"] = "test_loops.py (needs subgraphs)"
TESTED_ELSEWHERE["Scan"] = "test_loops.py (needs subgraphs)"


def test_every_rule_has_a_spec():
    tested = {s.op for s in SPECS} | set(TESTED_ELSEWHERE)
    untested = sorted(op for (domain, op), rule in RULES.items() if rule.fn is not None and op not in tested)
    assert not untested, f"ops with a rule but no spec in op_specs.py: {untested}"
