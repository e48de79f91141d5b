"""``onnxgraph optimize``: exit codes, files written (or not), reports, external data."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.model import Model
from onnxgraph.optimizers import pipeline, registry
from onnxgraph.optimizers.base import Pass
from onnxgraph.runtime.sessions import create_session

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSFORMER = os.path.join(ROOT, "models", "transformer.onnx")


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["optimize", *args])


def _outputs(path, feeds):
    session = create_session(os.fspath(path))
    return session.run(None, feeds)


def test_optimizes_verifies_and_reports(tmp_path):
    out, report = tmp_path / "t.onnx", tmp_path / "report.json"
    result = _invoke(
        TRANSFORMER,
        "-o",
        str(out),
        "--report-json",
        str(report),
        "--input-shape",
        "input_ids=2,5",
        "--input-shape",
        "attention_mask=2,5",
    )
    assert result.exit_code == 0, result.output
    assert "verification: passed" in result.stdout and "nodes" in result.stdout
    data = json.loads(report.read_text())
    assert data["ok"] and data["verification"]["passed"]
    assert data["after"]["nodes"] < data["before"]["nodes"]
    assert {p["name"] for p in data["passes"]} >= {"fold", "shapes", "dce", "cse"}
    assert len(onnxgraph.load(out).graph) == data["after"]["nodes"]
    timings = data["timings"]
    assert list(timings) == ["load", "type_annotation", "passes", "verification", "save"]
    assert all(seconds > 0 for seconds in timings.values())
    assert timings["passes"] >= sum(p["seconds"] for p in data["passes"]) * 0.99
    assert "time: load" in result.stdout and "verification" in result.stdout.split("time: load")[1]


def test_refuses_to_overwrite_the_input(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(open(TRANSFORMER, "rb").read())
    result = _invoke(str(model), "-o", str(model))
    assert result.exit_code == 2 and "refusing to overwrite" in result.stderr
    assert model.read_bytes() == open(TRANSFORMER, "rb").read()
    assert _invoke(str(model), "-o", str(model), "--overwrite").exit_code == 0


def test_unknown_pass_and_bad_shape_are_usage_errors(tmp_path):
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "o.onnx"), "--passes", "fold,nope")
    assert result.exit_code == 2 and "unknown pass 'nope'" in result.stderr
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "o.onnx"), "--input-shape", "input_ids")
    assert result.exit_code == 2
    assert not (tmp_path / "o.onnx").exists()


class _BreaksAdd(Pass):
    """Rewrites:
    1. ``break_add``: every Add becomes a Sub (wrong on purpose).
    """

    name = "breaks-add"
    rewrites = ("break_add",)

    def run(self, model: Model) -> Counter[str]:
        stats: Counter[str] = Counter()
        for node in list(model.all_nodes()):
            if node.op_type == "Add" and self.allows("break_add"):
                node.op_type = "Sub"
                stats["break_add"] += 1
        return stats


def test_wrong_pass_is_rolled_back_with_a_warning_and_exit_0(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.passes(), _BreaksAdd.name, _BreaksAdd)
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    result = _invoke(
        TRANSFORMER, "-o", str(out), "--passes", "constants,breaks-add,fold,dce", "--report-json", str(report)
    )
    assert result.exit_code == 0, result.output
    assert "rolled back breaks-add (break_add)" in result.stderr
    data = json.loads(report.read_text())
    assert data["rollbacks"][0]["pass_name"] == "breaks-add" and data["verification"]["passed"]
    feeds = {"input_ids": np.array([[1, 2, 3]]), "attention_mask": np.array([[1, 1, 0]])}
    np.testing.assert_allclose(_outputs(out, feeds)[0], _outputs(TRANSFORMER, feeds)[0], rtol=1e-4, atol=1e-5)


def test_no_correct_model_exits_1_and_writes_nothing(tmp_path, monkeypatch):
    def corrupted(source, allow_outside=False):
        def fresh():
            model = onnxgraph.load(source)
            for node in model.all_nodes():
                if node.op_type == "Add":
                    node.op_type = "Sub"
            return model

        return fresh

    monkeypatch.setattr(pipeline, "_copier", corrupted)
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    result = _invoke(TRANSFORMER, "-o", str(out), "--report-json", str(report), "--verify-whole")
    assert result.exit_code == 1 and "no correct optimized model" in result.stderr
    assert not out.exists()
    assert json.loads(report.read_text())["ok"] is False


def test_no_verify_skips_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setattr("onnxgraph.optimizers.pipeline.Verifier", None)  # would fail if used
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "o.onnx"), "--no-verify")
    assert result.exit_code == 0 and "skipped" in result.stdout


def test_json_times_each_phase_and_verification_takes_none_without_it(tmp_path):
    result = _invoke(TRANSFORMER, "-o", str(tmp_path / "o.onnx"), "--no-verify", "--json")
    assert result.exit_code == 0, result.output
    timings = json.loads(result.stdout)["timings"]
    assert list(timings) == ["load", "type_annotation", "passes", "verification", "save"]
    assert timings["verification"] == 0.0
    assert all(timings[phase] > 0 for phase in ("load", "type_annotation", "passes", "save"))


def test_external_data_stays_external(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]),
        helper.make_node("Identity", ["wt"], ["wi"]),
        helper.make_node("MatMul", ["x", "wi"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", 1, ["n", 64])],
        [helper.make_tensor_value_info("y", 1, ["n", 64])],
        [numpy_helper.from_array(w, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    source = tmp_path / "src" / "m.onnx"
    source.parent.mkdir()
    onnx.save(proto, source, save_as_external_data=True, location="m.weights", size_threshold=0)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    result = _invoke(str(source), "-o", str(out))
    assert result.exit_code == 0, result.output
    saved = onnx.load(out, load_external_data=False)
    assert [t.data_location for t in saved.graph.initializer] == [onnx.TensorProto.EXTERNAL]
    assert [n.op_type for n in saved.graph.node] == ["MatMul"]
    assert sorted(os.listdir(source.parent)) == ["m.onnx", "m.weights"]  # no verification leftovers
    x = rng.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(_outputs(out, {"x": x})[0], x @ w.T, rtol=1e-4, atol=1e-4)


def test_a_model_beyond_the_protobuf_limit_is_saved_with_external_data(tmp_path, monkeypatch):
    """The over-2-GB path, exercised by lowering the limit instead of writing 2 GB."""
    from onnxgraph.serde import fileio

    monkeypatch.setattr(fileio, "PROTOBUF_LIMIT", 64 * 64 * 4)
    monkeypatch.setattr(fileio, "_HEADROOM", 0)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", 1, ["n", 64])],
        [helper.make_tensor_value_info("y", 1, ["n", 64])],
        [numpy_helper.from_array(w, "w")],
    )
    source = tmp_path / "inline.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), source)
    out = tmp_path / "out.onnx"
    result = _invoke(str(source), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "verification: passed" in result.stdout
    saved = onnx.load(out, load_external_data=False)
    assert [t.data_location for t in saved.graph.initializer] == [onnx.TensorProto.EXTERNAL]
    x = rng.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_allclose(_outputs(out, {"x": x})[0], x @ w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("flag", ["--size-limit=-1"])
def test_negative_size_limit_is_rejected(tmp_path, flag):
    assert _invoke(TRANSFORMER, "-o", str(tmp_path / "o.onnx"), flag).exit_code == 2


def test_output_is_byte_identical_across_processes_and_hash_seeds(tmp_path):
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}.onnx"
        # cwd away from the checkout, so `python -c` imports the installed package, not the source folder
        subprocess.run(
            [sys.executable, "-c", "from onnxgraph.cli import main; main()", "optimize", TRANSFORMER, "-o", str(out)],
            check=True,
            capture_output=True,
            cwd=tmp_path,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_model_onnxruntime_cannot_run_is_bad_input_unless_no_verify(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Opaque", ["x"], ["h"], domain="custom"), helper.make_node("Identity", ["h"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", 1, [2])],
        [helper.make_tensor_value_info("y", 1, [2])],
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)], ir_version=8
    )
    source = tmp_path / "custom.onnx"
    onnx.save(proto, source)
    result = _invoke(str(source), "-o", str(tmp_path / "o.onnx"))
    assert result.exit_code == 2 and "cannot verify" in result.stderr and "--no-verify" in result.stderr
    assert not (tmp_path / "o.onnx").exists()
    assert _invoke(str(source), "-o", str(tmp_path / "o.onnx"), "--no-verify").exit_code == 0


def test_bench_compares_the_original_with_the_result(tmp_path):
    out, report = tmp_path / "t.onnx", tmp_path / "report.json"
    result = _invoke(TRANSFORMER, "-o", str(out), "--report-json", str(report), "--bench", "--provider", "cpu")
    assert result.exit_code == 0, result.output
    assert "p50 ratio B/A" in result.stdout and "output parity: passed" in result.stdout
    bench = json.loads(report.read_text())["bench"]
    assert [m["path"] for m in bench["models"]] == [TRANSFORMER, str(out)]
    assert bench["comparison"]["parity"]["passed"] and bench["comparison"]["ratio_p50"] > 0


def test_bench_parity_failure_exits_1(tmp_path, monkeypatch):
    """Verification off and a pass that changes results: the benchmark's parity check catches it."""
    monkeypatch.setitem(registry.passes(), _BreaksAdd.name, _BreaksAdd)
    out = tmp_path / "t.onnx"
    result = _invoke(
        TRANSFORMER, "-o", str(out), "--passes", "breaks-add", "--no-verify", "--bench", "--provider", "cpu"
    )
    assert result.exit_code == 1
    assert "outputs differ" in result.stderr
