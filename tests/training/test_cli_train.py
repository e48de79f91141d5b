"""``onnxgraph artifacts`` and ``onnxgraph train``: outputs, exit codes, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from onnxgraph.autodiff import LOSS_FUNCTIONS
from onnxgraph.cli import cli
from onnxgraph.cli.artifacts import LOSS_FUNCTIONS as CLI_LOSS_FUNCTIONS
from onnxgraph.cli.artifacts import OPTIMIZER_NAMES
from onnxgraph.runtime.sessions import create_session
from onnxgraph.training import OPTIMIZERS

MLP = os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def data_file(tmp_path, mlp_data):
    path = tmp_path / "train.npz"
    np.savez(path, **mlp_data)
    return path


def test_choices_match_the_library():
    assert CLI_LOSS_FUNCTIONS == LOSS_FUNCTIONS
    assert OPTIMIZER_NAMES == tuple(OPTIMIZERS)


def test_artifacts_writes_the_folder(tmp_path):
    out = tmp_path / "art"
    result = _invoke(
        "artifacts",
        MLP,
        "--loss-fn",
        "cross_entropy",
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--freeze",
        "fc0.*",
        "-o",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["layout"]["optimizer_state"] == ["fc1.weight.momentum_buffer", "fc1.bias.momentum_buffer"]
    for name in ("train_step.onnx", "eval.onnx", "inference.onnx", "training.json", "initial_state.safetensors"):
        assert (out / name).exists()
    onnx.checker.check_model(str(out / "train_step.onnx"))


def test_train_writes_a_trained_model_and_metrics(tmp_path, data_file, mlp_data):
    out, ckpt = tmp_path / "trained.onnx", tmp_path / "ckpt"
    result = _invoke(
        "train",
        MLP,
        "--data",
        data_file,
        "--eval-data",
        data_file,
        "--loss-fn",
        "cross_entropy",
        "--batch-size",
        32,
        "--epochs",
        4,
        "--lr",
        "1e-3",
        "--provider",
        "cpu",
        "--checkpoint-dir",
        ckpt,
        "-o",
        out,
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["steps"] == 12
    records = [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert len(losses) == 12 and len(evals) == 4 and evals[-1] < evals[0]
    assert report["eval_loss"] == pytest.approx(evals[-1])
    (logits,) = create_session(str(out)).run(None, {"x": mlp_data["x"]})
    assert logits.shape == (96, 10)
    assert (ckpt / "latest.safetensors").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "missing.npz", "--batch-size", "16"], "missing.npz: no such file or folder"),
        (["--batch-size", "1000", "--drop-last"], "fewer than one batch of 1000"),
        (["--batch-size", "16", "--freeze", "nope"], "frozen 'nope' matches no"),
        (["--batch-size", "16", "--resume"], "--resume needs --checkpoint-dir"),
        (["--batch-size", "16", "--momentum", "0.9"], "--momentum and --nesterov go with --optimizer sgd"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, data_file, args, message):
    out = tmp_path / "out.onnx"
    data = [] if "--data" in args else ["--data", data_file]
    result = _invoke("train", MLP, "--loss-fn", "cross_entropy", "--steps", 2, "-o", out, *data, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_nan_loss_exits_2_and_keeps_the_checkpoint(tmp_path, data_file):
    ckpt = tmp_path / "ckpt"
    result = _invoke(
        "train",
        MLP,
        "--data",
        data_file,
        "--loss-fn",
        "cross_entropy",
        "--optimizer",
        "sgd",
        "--lr",
        "1e6",
        "--batch-size",
        16,
        "--steps",
        100,
        "--checkpoint-dir",
        ckpt,
        "--checkpoint-every",
        1,
    )
    assert result.exit_code == 2, result.output
    assert "the loss is" in result.output and "last good checkpoint" in result.output
    assert (ckpt / "latest.safetensors").exists()


def test_help_ends_with_examples():
    for command in ("train", "artifacts"):
        result = _invoke(command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output


def _train_command(data, ckpt, steps: int, *extra) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from onnxgraph.cli import main; main()",
        "train",
        MLP,
        "--data",
        str(data),
        "--loss-fn",
        "cross_entropy",
        "--batch-size",
        "8",
        "--steps",
        str(steps),
        "--threads",
        "1",
        "--provider",
        "cpu",
        "--checkpoint-dir",
        str(ckpt),
        "--checkpoint-every",
        "25",
        *extra,
    ]


def _losses(ckpt) -> list[float]:
    return [json.loads(line)["loss"] for line in (ckpt / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_losses(tmp_path, data_file):
    steps = 400
    subprocess.run(_train_command(data_file, tmp_path / "whole", steps), check=True, capture_output=True)
    expected = _losses(tmp_path / "whole")
    ckpt = tmp_path / "killed"
    process = subprocess.Popen(_train_command(data_file, ckpt, steps), stderr=subprocess.DEVNULL)
    metrics = ckpt / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and metrics.read_text().count("\n") >= 60:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    process.wait()
    if process.returncode != -signal.SIGKILL:
        pytest.skip("the run ended before it could be killed")
    killed_at = len(_losses(ckpt))
    assert killed_at < steps
    subprocess.run(_train_command(data_file, ckpt, steps, "--resume"), check=True, capture_output=True)
    assert _losses(ckpt) == expected


def test_plot_writes_the_loss_curve(tmp_path, data_file):
    pytest.importorskip("matplotlib", reason="--plot needs the plot extra")
    png = tmp_path / "loss.png"
    result = _invoke(
        "train",
        MLP,
        "--data",
        data_file,
        "--eval-data",
        data_file,
        "--loss-fn",
        "cross_entropy",
        "--batch-size",
        32,
        "--epochs",
        2,
        "--checkpoint-dir",
        tmp_path / "ckpt",
        "--plot",
        png,
    )
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_a_checkpoint_dir_is_refused(tmp_path, data_file):
    result = _invoke(
        "train",
        MLP,
        "--data",
        data_file,
        "--loss-fn",
        "cross_entropy",
        "--batch-size",
        32,
        "--steps",
        1,
        "--plot",
        tmp_path / "loss.png",
    )
    assert result.exit_code == 2 and "--plot draws the metrics log" in result.output


def test_accumulate_runs_grad_and_apply_steps(tmp_path, data_file):
    out = tmp_path / "art"
    result = _invoke("artifacts", MLP, "--loss-fn", "cross_entropy", "--accumulate", 2, "-o", out)
    assert result.exit_code == 0 and (out / "grad_step.onnx").exists() and (out / "apply_step.onnx").exists()
    result = _invoke(
        "train",
        MLP,
        "--data",
        data_file,
        "--loss-fn",
        "cross_entropy",
        "--batch-size",
        16,
        "--accumulate",
        3,
        "--epochs",
        2,
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["steps"] == 4  # 2 epochs of 6 batches, 3 batches per update
