"""optimize's verification runs in child processes stopped at the check's time budget: a session that
never comes is stopped and reported, and nothing is written as verified that was not."""

from __future__ import annotations

import model_builders
import onnx
import pytest
from click.testing import CliRunner

from onnxgraph.cli import cli
from onnxgraph.errors import VerificationUnavailable
from onnxgraph.optimizers import optimize, verify
from onnxgraph.runtime.isolated import TEST_CRASH_ENV
from onnxgraph.runtime.sessions import RUN_BUDGET_ENV

BUDGET = "1"
"""Run budget in seconds: the check, and verification with it, stops a child after twice that."""


@pytest.fixture
def source(tmp_path, monkeypatch) -> str:
    path = str(tmp_path / "resnet.onnx")
    onnx.save(model_builders.resnet_like(blocks=1), path)
    monkeypatch.setenv(RUN_BUDGET_ENV, BUDGET)
    return path


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _hang_after_the_original(monkeypatch) -> None:
    """The original runs (at the first check, as region verification runs it); every child after it
    (the regions', the optimized model's) hangs."""
    real = verify.Verifier._run_original

    def run_original(self, *args, **kwargs):
        note = real(self, *args, **kwargs)
        monkeypatch.setenv(TEST_CRASH_ENV, "hang")
        return note

    monkeypatch.setattr(verify.Verifier, "_run_original", run_original)


def test_an_original_whose_session_hangs_cannot_be_verified(source, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_CRASH_ENV, "hang")
    out = tmp_path / "out.onnx"
    result = _invoke("optimize", source, "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {source}: cannot verify: the original model was not run: onnxruntime did not create and run a "
        "session within 2 s (onnxruntime's session creation grows quadratically with the number of nodes that "
        f"can run side by side; {RUN_BUDGET_ENV}=SECONDS allows longer) (use --no-verify to skip verification)"
    ]
    assert not out.exists()


def test_an_optimized_model_whose_session_hangs_is_unverified_and_not_written(source, tmp_path, monkeypatch):
    _hang_after_the_original(monkeypatch)
    out = tmp_path / "out.onnx"
    result = _invoke("optimize", source, "-o", str(out), "--json", str(tmp_path / "report.json"))
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"error: {source}: cannot verify: the optimized model was not run: onnxruntime did not create and run a "
        "session within 2 s"
    )
    assert line.endswith("(use --no-verify to skip verification)")
    assert not out.exists() and not (tmp_path / "report.json").exists()


def test_the_library_raises_rather_than_bisecting_a_run_that_was_stopped(source, monkeypatch):
    _hang_after_the_original(monkeypatch)
    checks = []
    real = verify.Verifier.check

    def counted(self, candidate):
        checks.append(candidate)
        return real(self, candidate)

    monkeypatch.setattr(verify.Verifier, "check", counted)
    with pytest.raises(VerificationUnavailable, match="the optimized model was not run"):
        optimize(source)
    assert len(checks) == 1  # a stopped run is not a wrong rewrite: no bisection, no rollback


def test_no_verify_writes_without_running_anything(source, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_CRASH_ENV, "hang")
    out = tmp_path / "out.onnx"
    result = _invoke("optimize", source, "-o", str(out), "--no-verify")
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(str(out))


def test_convert_of_an_original_whose_session_hangs_writes_nothing(source, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_CRASH_ENV, "hang")
    out = tmp_path / "half.onnx"
    result = _invoke("convert", source, "-o", str(out), "--fp16")
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {source}: cannot verify: the original model was not run: onnxruntime did not")
    assert not out.exists()
