"""``onnxgraph quantize``: exit codes, one-line errors, nothing written on failure, JSON."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from onnxgraph.cli import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSFORMER = os.path.join(ROOT, "models", "transformer.onnx")
CNN = os.path.join(ROOT, "models", "cnn.onnx")


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["quantize", *args])


def test_writes_model_and_json_report(tmp_path):
    out = tmp_path / "t.onnx"
    result = _invoke(
        TRANSFORMER, "-o", str(out), "--input-shape", "input_ids=1,8", "--input-shape", "attention_mask=1,8", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["method"] == "dynamic int8, QOperator"
    (output,) = report["accuracy"]["outputs"]
    assert output["name"] == "last_hidden_state" and output["cosine"] > 0.99 and output["max_abs"] > 0
    assert report["quantized_ops"]["MatMulInteger"] == 12 and out.exists()


def test_static_table_output(tmp_path):
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32))
    out, calibration = str(tmp_path / "q.onnx"), ["--calibration", str(data), "--calibration-method", "percentile"]
    result = _invoke(CNN, "-o", out, "--mode", "static", *calibration, "--min-cosine", "0.9")
    assert result.exit_code == 0, result.output
    stdout = " ".join(result.stdout.split())  # rich wraps long lines
    assert "static int8, QDQ, percentile calibration" in stdout
    assert "top-1 agreement" in stdout and "near ties" in stdout and "8 samples of" in stdout


def test_min_cosine_failure_exits_1_and_writes_nothing(tmp_path):
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "t.onnx"), "--weights-only", "int4", "--min-cosine", "0.99999")
    assert result.exit_code == 1
    assert "accuracy below --min-cosine 0.99999" in result.stderr and "nothing written" in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not an npz"), "not a readable .npz archive"),
        (lambda p: np.savez(p, y=np.zeros((2, 1, 8, 8), np.float32)), "lacks input 'x'"),
        (lambda p: np.savez(p, x=np.zeros((2, 1, 8, 8), np.float64)), "is float64, the model expects float32"),
        (lambda p: np.savez(p, x=np.zeros((2, 1, 5, 5), np.float32)), "the model does not run on this data"),
        (lambda p: np.savez(p, x=np.zeros((2, 8, 8), np.float32)), "must have rank 4"),
    ],
)
def test_bad_calibration_data_exits_2_with_one_line(tmp_path, make, message):
    data = tmp_path / "calib.npz"
    make(data)
    out = tmp_path / "out"
    out.mkdir()
    result = _invoke(CNN, "-o", str(out / "q.onnx"), "--mode", "static", "--calibration", str(data))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and str(data) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert os.listdir(out) == []


def test_dynamic_with_qdq_is_a_usage_error(tmp_path):
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "t.onnx"), "--format", "qdq")
    assert result.exit_code == 2 and "QOperator format only" in result.stderr


def test_help_ends_with_examples():
    result = CliRunner().invoke(cli, ["quantize", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "--calibration images.npz" in result.output


def test_bench_reports_the_ab_comparison_without_parity(tmp_path):
    report_path = tmp_path / "report.json"
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "t.onnx"), "--bench", "--json", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    comparison = report["bench"]["comparison"]
    assert comparison["ratio_p50"] > 0 and len(comparison["ci95"]) == 2
    assert [m["path"] for m in report["bench"]["models"]] == [TRANSFORMER, str(tmp_path / "t.onnx")]
    assert "output parity" not in result.stdout  # --json FILE keeps the tables, parity left out
    assert "p50 ratio B/A" in result.stdout


def test_missing_output_folder_is_bad_input(tmp_path):
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "nope" / "t.onnx"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_model_not_running_on_seeded_inputs_names_input_shape(tmp_path):
    import onnx.parser

    source = tmp_path / "fixed.onnx"
    onnx.save(
        onnx.parser.parse_model("""
        <ir_version: 8, opset_import: ["" : 17]>
        agraph (float[N, 3] x) => (float[2, 3] y)
          <int64[2] shape = {2, 3}, float[3, 3] w = {1, 0, 0, 0, 1, 0, 0, 0, 1}> {
            m = MatMul(x, w)
            y = Reshape(m, shape)
        }"""),
        source,
    )
    result = _invoke(str(source), "-o", str(tmp_path / "q.onnx"))
    assert result.exit_code == 2, result.output
    assert "does not run on seeded random inputs" in result.stderr and "--input-shape" in result.stderr
    assert _invoke(str(source), "-o", str(tmp_path / "q.onnx"), "--input-shape", "x=2,3").exit_code == 0
