"""``onnxgraph bench`` end to end on CPU: tables, JSON shape, parity exit codes, one-line errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

from onnxgraph.cli import cli
from onnxgraph.runtime import providers

TINY = ["--runs", "20", "--warmup", "2", "--provider", "cpu"]
HEADER = '<ir_version: 8, opset_import: ["" : 17]>'
CUDA_USABLE = providers.cuda_status().usable


def write(tmp_path, name: str, body: str, signature: str = "(float[N,8] x) => (float[N,8] y)") -> str:
    path = str(tmp_path / name)
    onnx.save(onnx.parser.parse_model(f"{HEADER} g {signature} {{ {body} }}"), path)
    return path


@pytest.fixture
def relu(tmp_path):
    return write(tmp_path, "relu.onnx", "y = Relu(x)")


@pytest.fixture
def shifted(tmp_path):
    return write(
        tmp_path,
        "shifted.onnx",
        "h = Relu(x) half = Constant<value = float {0.5}>() y = Add(h, half)",
    )


def bench(*args: str):
    return CliRunner().invoke(cli, ["bench", *args])


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_one_model_prints_the_latency_table(relu):
    result = bench(relu, *TINY)
    assert result.exit_code == 0, result.output
    for label in ("session creation", "first run", "p50", "p99", "throughput", "peak RSS increase"):
        assert label in result.stdout
    assert "20 (+2 warm-up)" in result.stdout and "parity" not in result.stdout


def test_identical_models_pass_and_json_keeps_its_shape(relu, tmp_path):
    out = tmp_path / "r.json"
    result = bench(relu, relu, *TINY, "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "output parity: passed" in result.stdout and "p50 ratio B/A" in result.stdout
    doc = json.loads(out.read_text())
    assert set(doc) >= {"models", "comparison", "environment"}
    for m in doc["models"]:
        assert set(m) >= {
            "path",
            "provider",
            "session_create_s",
            "first_run_ms",
            "latency_ms",
            "throughput_per_s",
            "peak_rss_mb",
        }
        lat = m["latency_ms"]
        assert set(lat) == {"min", "mean", "p50", "p90", "p95", "p99", "max"}
        assert lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
        assert m["provider"] == "CPUExecutionProvider" and m["runs"] == 20
    comparison = doc["comparison"]
    assert set(comparison) >= {"ratio_p50", "ci95", "parity"}
    low, high = comparison["ci95"]
    assert low <= comparison["ratio_p50"] <= high
    assert comparison["parity"]["passed"] is True
    (y,) = comparison["parity"]["outputs"]
    assert (y["name"], y["max_abs"], y["max_rel"], y["mismatches"]) == ("y", 0.0, 0.0, 0)
    env = doc["environment"]
    assert set(env) >= {"onnxruntime", "providers", "threads", "cpu"}
    assert env["onnxruntime"] == __import__("onnxruntime").__version__ and env["threads"] is None


def test_perturbed_model_fails_parity_with_exit_1(relu, shifted, tmp_path):
    out = tmp_path / "r.json"
    result = bench(relu, shifted, *TINY, "--input-shape", "x=2,8", "--json", str(out))
    assert result.exit_code == 1
    assert one_line_error(result) == "failed: outputs differ: 'y': 16 of 16 elements beyond rtol=0.0001, atol=1e-05"
    assert "FAILED" in result.stdout
    parity = json.loads(out.read_text())["comparison"]["parity"]  # the report is still written
    assert parity["passed"] is False and parity["outputs"][0]["max_abs"] == pytest.approx(0.5)


def test_tolerance_option_lets_a_known_difference_pass(relu, shifted):
    assert bench(relu, shifted, *TINY, "--tolerance", "y=0,0.6").exit_code == 0
    assert bench(relu, shifted, *TINY, "--tolerance", "0,0.6").exit_code == 0
    assert bench(relu, shifted, *TINY, "--tolerance", "y=0,0.4").exit_code == 1
    unknown = bench(relu, shifted, *TINY, "--tolerance", "logits=0,1")
    assert unknown.exit_code == 2 and "--tolerance names 'logits'" in one_line_error(unknown)
    assert bench(relu, shifted, *TINY, "--tolerance", "y=-1,0").exit_code == 2


def test_json_to_stdout_is_only_json(relu):
    result = bench(relu, *TINY, "--threads", "1", "--json", "-")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["comparison"] is None and doc["environment"]["threads"] == 1


def test_npz_inputs_are_used(relu, tmp_path):
    # Relu and Identity agree exactly on non-negative inputs only.
    identity = write(tmp_path, "identity.onnx", "y = Identity(x)")
    npz = tmp_path / "in.npz"
    np.savez(npz, x=np.abs(np.random.default_rng(0).standard_normal((3, 8))).astype(np.float32))
    assert bench(relu, identity, *TINY, "--input-shape", "x=3,8").exit_code == 1
    result = bench(relu, identity, *TINY, "--inputs", str(npz), "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["comparison"]["parity"]["outputs"][0]["size"] == 24


@pytest.mark.skipif(CUDA_USABLE, reason="a CUDA session can be created here")
def test_cuda_on_a_cpu_only_machine_is_a_clear_error(relu):
    result = bench(relu, "--provider", "cuda", "--runs", "5")
    assert result.exit_code == 2
    assert one_line_error(result).startswith("error: --provider cuda: CUDA is not active: ")
    assert result.stdout == ""


@pytest.mark.skipif(not CUDA_USABLE, reason="no CUDA session can be created here")
def test_cuda_with_io_binding_runs_on_cuda(relu, shifted):
    result = bench(
        relu,
        relu,
        "--provider",
        "cuda",
        "--io-binding",
        "--runs",
        "20",
        "--warmup",
        "2",
        "--json",
        "-",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [m["provider"] for m in doc["models"]] == ["CUDAExecutionProvider"] * 2 and doc["io_binding"]
    assert bench(relu, shifted, "--provider", "cuda", "--io-binding", "--runs", "5").exit_code == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--inputs", "missing.npz"], "missing.npz: no such file"),
        (["--input-shape", "z=1,8"], "--input-shape names 'z', which is not a model input"),
    ],
)
def test_bad_inputs_are_one_line_errors(relu, tmp_path, monkeypatch, extra, message):
    monkeypatch.chdir(tmp_path)
    result = bench(relu, *TINY, *extra)
    assert result.exit_code == 2
    assert message in one_line_error(result)


def test_npz_with_wrong_names_is_a_one_line_error(relu, tmp_path):
    npz = tmp_path / "in.npz"
    np.savez(npz, input=np.zeros((1, 8), np.float32))
    result = bench(relu, *TINY, "--inputs", str(npz))
    assert result.exit_code == 2
    assert one_line_error(result) == f"error: {npz}: lacks input 'x' (model inputs: x; file has: input)"


def test_missing_model_is_a_one_line_error(tmp_path):
    result = bench(str(tmp_path / "nope.onnx"), *TINY)
    assert result.exit_code == 2 and "nope.onnx" in one_line_error(result)


def test_runs_and_duration_exclude_each_other(relu):
    result = bench(relu, "--runs", "5", "--duration", "1")
    assert result.exit_code == 2 and "--runs or --duration" in result.output


def test_duration_runs_until_the_time_is_up(relu):
    result = bench(relu, relu, "--provider", "cpu", "--warmup", "0", "--duration", "0.05", "--json", "-")
    assert result.exit_code == 0, result.output
    a, b = (m["runs"] for m in json.loads(result.stdout)["models"])
    assert a == b >= 1


def test_plot_without_matplotlib_fails_before_running(relu, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    result = bench(relu, *TINY, "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 2
    assert one_line_error(result) == "error: --plot needs matplotlib: pip install 'onnxgraph[plot]'"
    assert result.stdout == "" and not (tmp_path / "p.png").exists()


def test_input_range_keeps_indices_in_bounds(tmp_path):
    gather = write(
        tmp_path,
        "gather.onnx",
        "t = Constant<value = float[4] {1, 2, 3, 4}>() y = Gather(t, ids)",
        "(int64[N] ids) => (float[N] y)",
    )
    assert bench(gather, *TINY, "--input-shape", "ids=64", "--input-range", "0,4").exit_code == 0
    out_of_bounds = bench(gather, *TINY, "--input-shape", "ids=64", "--input-range", "4,8")
    assert out_of_bounds.exit_code == 2 and "cannot run the model" in one_line_error(out_of_bounds)
    assert bench(gather, *TINY, "--input-range", "0").exit_code == 2
    # A named range wins over the range for all inputs.
    named = bench(gather, *TINY, "--input-shape", "ids=64", "--input-range", "4,8", "--input-range", "ids=0,4")
    assert named.exit_code == 0, named.output
    unknown = bench(gather, *TINY, "--input-range", "mask=0,2")
    assert unknown.exit_code == 2
    assert "--input-range names 'mask', which is not a model input" in one_line_error(unknown)
    empty = bench(gather, *TINY, "--input-range", "ids=3,3")
    assert empty.exit_code == 2 and "input range of 'ids' 3,3 is empty" in one_line_error(empty)


@pytest.mark.parametrize(
    ("ratio", "ci", "verdict"),
    [
        (0.80, [0.78, 0.82], "B is faster (20.0% less p50 latency)"),
        (1.25, [1.20, 1.30], "B is slower (25.0% more p50 latency)"),
        (0.99, [0.985, 0.995], "no meaningful difference"),
        (0.90, [0.70, 1.10], "no clear difference"),
    ],
)
def test_ratio_verdict_needs_a_clear_and_large_enough_difference(ratio, ci, verdict):
    from onnxgraph.cli.bench import _ratio_line

    assert verdict in _ratio_line({"ratio_p50": ratio, "ci95": ci})


def test_output_files_never_replace_a_model_and_need_an_existing_folder(relu, tmp_path):
    before = open(relu, "rb").read()
    result = bench(relu, *TINY, "--json", relu)
    assert result.exit_code == 2 and "looks like a model, not a JSON file" in one_line_error(result)
    assert open(relu, "rb").read() == before
    result = bench(relu, *TINY, "--json", str(tmp_path / "no" / "r.json"))
    assert result.exit_code == 2 and "does not exist" in one_line_error(result)
    assert result.stdout == ""  # refused before running


def test_auto_reports_the_provider_that_ran_and_why_cuda_was_not_used(relu):
    result = bench(relu, "--provider", "auto", "--runs", "5", "--warmup", "0", "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    status = providers.cuda_status()
    expected = "CUDAExecutionProvider" if status.usable else "CPUExecutionProvider"
    assert doc["models"][0]["provider"] == expected
    assert doc["environment"]["cuda"] == ("usable" if status.usable else status.reason)
    cpu = json.loads(bench(relu, *TINY, "--json", "-").stdout)
    assert "cuda" not in cpu["environment"]


def test_a_float16_model_with_float32_io_is_judged_at_float16_tolerance(tmp_path):
    """Casting to float16 inside the model changes float32 outputs by more than float32's tolerance."""
    weights = "w = Constant<value = float[8,8] {" + ",".join(str((i % 7) / 7) for i in range(64)) + "}>()"
    full = write(tmp_path, "fp32.onnx", f"{weights} y = MatMul(x, w)")
    half = write(
        tmp_path,
        "fp16.onnx",
        f"{weights} w16 = Cast<to = 10>(w) x16 = Cast<to = 10>(x) y16 = MatMul(x16, w16) y = Cast<to = 1>(y16)",
    )
    result = bench(full, half, *TINY, "--input-shape", "x=4,8", "--json", "-")
    assert result.exit_code == 0, result.output
    (output,) = json.loads(result.stdout)["comparison"]["parity"]["outputs"]
    assert output["max_abs"] > 1e-4  # float32's default tolerance would have failed it
    assert (output["rtol"], output["atol"]) == (1e-2, 1e-3)
