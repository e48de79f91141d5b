"""Verification's onnxruntime runs: each in a child process, one per model state, the original from its
file, no pre-packing, and dynamic dimensions sized from the model (a conv front end over raw audio)."""

from __future__ import annotations

import os
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
from onnxgraph.runtime import isolated, written
from onnxgraph.runtime.sessions import create_session

AUDIO = model_builders.audio_frontend()


class RunLog:
    """Wraps ``isolated.run_isolated`` (every verification run goes through it): the model file of each
    run, its inputs' shapes and options."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.shapes: list[dict] = []
        self.options: list[dict] = []

    def __call__(self, path, feeds, **kwargs):
        self.paths.append(os.fspath(path))
        self.shapes.append({k: v.shape for k, v in feeds.items()})
        self.options.append(kwargs)
        return REAL_RUN(path, feeds, **kwargs)


REAL_RUN = isolated.run_isolated


@pytest.fixture
def run_log(monkeypatch) -> RunLog:
    log = RunLog()
    monkeypatch.setattr(isolated, "run_isolated", log)
    return log


@pytest.fixture
def audio_file(tmp_path) -> str:
    path = str(tmp_path / "audio.onnx")
    onnx.save(AUDIO, path)
    return path


def test_optimize_runs_the_original_from_its_file_then_the_result_alone(run_log, audio_file):
    """No --input-shape: the samples axis gets the front end's receptive field (11), batch stays 2."""
    model, report = optimize(audio_file, verify_regions=False)
    assert report.verification.passed and report.after.nodes < report.before.nodes
    # the original from its file at each size tried (2, 1, then 11), then the result from a temporary file
    assert run_log.paths[:-1] == [audio_file] * 3 and run_log.paths[-1] != audio_file
    assert run_log.shapes[-2:] == [{"wav": (2, 11)}] * 2
    # optimizations off (the child then makes no pre-packed weight copies), stopped at the check's budget
    assert all(
        o == {"optimization": "disable", "timeout": written.check_seconds(), "load_only": False}
        for o in run_log.options
    )
    wav = np.random.default_rng(0).standard_normal((2, 11)).astype(np.float32)
    expected = create_session(audio_file, optimization="disable").run(None, {"wav": wav})[0]
    actual = create_session(model.to_proto().SerializeToString()).run(None, {"wav": wav})[0]
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


def test_a_result_that_computes_what_the_original_did_runs_no_second_session(run_log, audio_file):
    """The only change (a Constant node become an initializer of the same data) leaves no region to run."""
    _, report = optimize(audio_file)
    assert report.verification.passed and report.verification.mode == "regions"
    assert report.verification.regions == 0 and report.verification.unchanged_outputs == ["y"]
    assert run_log.paths == [audio_file] * 3  # nothing to expose: the original from its file (sizes 2, 1, 11)


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


def test_a_rollback_makes_one_run_per_checked_state(run_log, monkeypatch, audio_file):
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
    assert len(run_log.paths) == 3 + len(checks)  # the original at three sizes, then one per checked state


def test_convert_fp16_runs_the_original_from_its_file_and_sizes_the_audio_axis(run_log, audio_file, tmp_path):
    out = str(tmp_path / "audio.fp16.onnx")
    result = CliRunner().invoke(cli, ["convert", audio_file, "-o", out, "--fp16"])
    assert result.exit_code == 0, result.output
    # the original from its file at each size tried, then the converted model (checked there, not again)
    assert run_log.paths[:3] == [audio_file] * 3 and audio_file not in run_log.paths[3:]
    assert run_log.shapes[2] == {"wav": (2, 11)} and run_log.options[2]["optimization"] == "disable"
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
