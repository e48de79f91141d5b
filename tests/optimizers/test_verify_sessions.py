"""Verification's onnxruntime sessions: one per model state, one alive at a time, no pre-packing,
and dynamic dimensions sized from the model (a conv front end over raw audio)."""

from __future__ import annotations

import os
import weakref
from collections import Counter

import model_builders
import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.model import Model
from onnxgraph.optimizers import optimize
from onnxgraph.optimizers.base import Pass
from onnxgraph.runtime import sessions
from onnxgraph.runtime.sessions import create_session

AUDIO = model_builders.audio_frontend()


class SessionLog:
    """Wraps ``sessions.create_session``: what each session was made from and how many were alive."""

    def __init__(self) -> None:
        self.sources: list[str] = []
        self.options: list[dict] = []
        self.most_alive = 0
        self._alive: list[weakref.ref] = []

    def __call__(self, model, **kwargs):
        session = REAL_CREATE(model, **kwargs)
        self.sources.append(model if isinstance(model, str) else "<bytes>")
        self.options.append(kwargs)
        self._alive = [r for r in self._alive if r() is not None] + [weakref.ref(session)]
        self.most_alive = max(self.most_alive, len(self._alive))
        return session


REAL_CREATE = sessions.create_session


@pytest.fixture
def session_log(monkeypatch) -> SessionLog:
    log = SessionLog()
    monkeypatch.setattr(sessions, "create_session", log)
    return log


@pytest.fixture
def audio_file(tmp_path) -> str:
    path = str(tmp_path / "audio.onnx")
    onnx.save(AUDIO, path)
    return path


def test_optimize_runs_the_original_from_its_file_then_the_result_alone(session_log, audio_file):
    """No --input-shape: the samples axis gets the front end's receptive field (11), batch stays 2."""
    model, report = optimize(audio_file, verify_regions=False)
    assert report.verification.passed and report.after.nodes < report.before.nodes
    assert len(session_log.sources) == 2  # one session per model state; the retried sizes reuse the first
    assert session_log.sources[0] == audio_file
    assert session_log.most_alive == 1  # the original's session is gone before the result's is made
    assert all(o["config_entries"]["session.disable_prepacking"] == "1" for o in session_log.options)
    wav = np.random.default_rng(0).standard_normal((2, 11)).astype(np.float32)
    expected = create_session(audio_file, optimization="disable").run(None, {"wav": wav})[0]
    actual = create_session(model.to_proto().SerializeToString()).run(None, {"wav": wav})[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_a_result_that_computes_what_the_original_did_runs_no_second_session(session_log, audio_file):
    """The only change (a Constant node become an initializer of the same data) leaves no region to run."""
    _, report = optimize(audio_file)
    assert report.verification.passed and report.verification.mode == "regions"
    assert report.verification.regions == 0 and report.verification.unchanged_outputs == ["y"]
    assert session_log.sources == [audio_file]  # nothing to expose: the original runs from its file


class _ReluToTanh(Pass):
    """A deliberately wrong pass.

    Rewrites:
        1. ``swap``: turns every Relu into a Tanh.
    """

    name = "relu-to-tanh"
    rewrites = ("swap",)

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for node in list(model.all_nodes()):
            if node.op_type == "Relu" and self.allows("swap"):
                node.op_type = "Tanh"
                stats["swap"] += 1
        return stats


def test_a_rollback_makes_one_session_per_checked_state_one_at_a_time(session_log, monkeypatch, audio_file):
    from onnxgraph.optimizers import registry, verify

    monkeypatch.setitem(registry.passes(), _ReluToTanh.name, _ReluToTanh)
    checks = []
    real_check = verify.Verifier.check

    def counted(self, candidate):
        checks.append(candidate)
        return real_check(self, candidate)

    monkeypatch.setattr(verify.Verifier, "check", counted)
    _, report = optimize(audio_file, passes=["constants", "relu-to-tanh", "dce"])
    assert [(r.pass_name, r.rewrite) for r in report.rollbacks] == [("relu-to-tanh", "swap")]
    assert report.verification.passed and len(checks) > 2  # the failure, the bisection, the rerun
    assert len(session_log.sources) == 1 + len(checks)  # the original once, then one per checked state
    assert session_log.most_alive == 1


def test_convert_fp16_runs_the_original_once_in_process_and_sizes_the_audio_axis(session_log, audio_file, tmp_path):
    out = str(tmp_path / "audio.fp16.onnx")
    result = CliRunner().invoke(cli, ["convert", audio_file, "-o", out, "--fp16"])
    assert result.exit_code == 0, result.output
    # the original from its file (the converted model runs in a child process, checked there)
    assert session_log.sources == [audio_file]
    assert session_log.options[0]["config_entries"]["session.disable_prepacking"] == "1"
    written = onnxgraph.load(out)
    assert {v.const_value.elem_type for v in written.graph.initializers.values()} == {onnx.TensorProto.FLOAT16}


def test_a_model_no_size_fits_fails_with_a_pointer_to_input_shape(tmp_path):
    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[n] x) => (float[4, 4] y) <int64[2] s = {4, 4}> {
        t = Identity(x)
        y = Reshape(t, s)
    }"""
    path = str(tmp_path / "fixed.onnx")
    onnx.save(onnx.parser.parse_model(text), path)
    result = CliRunner().invoke(cli, ["optimize", path, "-o", str(tmp_path / "o.onnx")])
    assert result.exit_code == 2
    assert "--input-shape" in result.output and "sizes 2, 1" in result.output
    assert not os.path.exists(tmp_path / "o.onnx")
    ok = CliRunner().invoke(cli, ["optimize", path, "-o", str(tmp_path / "o.onnx"), "--input-shape", "x=16"])
    assert ok.exit_code == 0, ok.output


def test_the_check_before_writing_sizes_the_result_as_the_source_runs(audio_file, tmp_path, monkeypatch):
    """``convert --external-data`` changes no computation, so no verification: the last check runs the
    result on onnxruntime, with the samples axis the source needed (it used to give up at size 1)."""
    from onnxgraph.runtime import isolated

    runs = []
    real = isolated.run_isolated

    def spy(path, feeds, **kwargs):
        runs.append({k: v.shape for k, v in feeds.items()})
        return real(path, feeds, **kwargs)

    monkeypatch.setattr(isolated, "run_isolated", spy)
    result = CliRunner().invoke(cli, ["convert", audio_file, "-o", str(tmp_path / "o.onnx"), "--external-data"])
    assert result.exit_code == 0, result.output
    # the source's tries (2, then 1, then its front end's length), each in a child, then the result
    assert runs[0] == {"wav": (2, 2)} and runs[-2:] == [{"wav": (2, 11)}] * 2
