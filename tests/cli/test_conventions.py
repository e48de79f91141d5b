"""One command line: -o/--output, --json [FILE], examples in --help, validated --input-shape, whole names."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from onnxgraph.cli import cli

MLP = os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")
WRITES_A_FILE = {"optimize", "convert", "grad", "viz"}


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_help_ends_with_two_or_three_examples(name):
    result = _invoke(name, "--help")
    assert result.exit_code == 0
    lines = [line.strip() for line in result.stdout.strip().splitlines()]
    examples = lines[lines.index("Examples:") + 1 :]
    assert 2 <= len(examples) <= 3 and all(e.startswith(f"onnxgraph {name} ") for e in examples), examples


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_json_and_writers_have_dash_o(name):
    options = {opt for param in cli.commands[name].params for opt in getattr(param, "opts", [])}
    assert "--json" in options
    if name in WRITES_A_FILE:
        assert {"-o", "--output"} <= options


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "onnxgraph", "info", MLP, "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"]["by_op_type"] == {"Gemm": 2, "Relu": 1}


def test_shell_completion_script_is_generated():
    result = CliRunner().invoke(cli, [], prog_name="onnxgraph", env={"_ONNXGRAPH_COMPLETE": "bash_source"})
    assert result.exit_code == 0 and "_onnxgraph_completion" in result.stdout


def _long_name_model(tmp_path) -> tuple[str, str]:
    name = "encoder.layers.11.attention.self.query_key_value_projection_output_" + "x" * 80
    x = helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph([helper.make_node("Relu", [name], ["y"])], "g", [x], [y])
    path = str(tmp_path / "long.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path, name


def test_piped_tables_keep_long_names_whole(tmp_path):
    path, name = _long_name_model(tmp_path)
    result = _invoke("info", path)
    assert result.exit_code == 0, result.output
    assert any(name in line for line in result.stdout.splitlines())


@pytest.mark.parametrize(
    "command",
    [
        ["optimize", "-o", "{out}"],
        ["convert", "-o", "{out}", "--opset", "18"],
        ["info"],
        ["bench", "--runs", "1", "--warmup", "0"],
    ],
)
def test_input_shape_names_an_input_of_the_model(command, tmp_path):
    out = str(tmp_path / "out.onnx")
    args = [a.format(out=out) for a in command]
    result = _invoke(args[0], MLP, *args[1:], "--input-shape", "nope=1,2")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope" in lines[0], lines
    assert not os.path.exists(out)


def test_json_file_alongside_tables_and_the_report_json_alias(tmp_path):
    report = tmp_path / "info.json"
    result = _invoke("info", MLP, "--json", str(report))
    assert result.exit_code == 0 and "operators" in result.stdout
    assert json.loads(report.read_text())["nodes"]["total"] == 3
    out, report = tmp_path / "o.onnx", tmp_path / "o.json"
    result = _invoke("optimize", MLP, "-o", str(out), "--report-json", str(report))
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["ok"] is True
    result = _invoke("optimize", MLP, "-o", str(out), "--json", "--overwrite")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["after"]["nodes"] == 3  # stdout holds the JSON alone


def test_json_refuses_a_model_file_as_its_destination(tmp_path):
    """``info --json a.onnx b.onnx`` would take a.onnx as the JSON file: refused, a.onnx untouched."""
    before = open(MLP, "rb").read()
    result = _invoke("info", "--json", MLP, MLP)
    assert result.exit_code == 2 and "looks like a model" in result.stderr
    assert open(MLP, "rb").read() == before


def test_viz_json(tmp_path):
    out = tmp_path / "m.dot"
    result = _invoke("viz", MLP, "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"output": str(out), "format": "dot", "nodes": 3, "omitted": 0}
    assert out.read_text().startswith("digraph")


def test_bench_json_to_stdout_is_json_only():
    result = _invoke("bench", MLP, "--runs", "2", "--warmup", "0", "--json")
    assert result.exit_code == 0, result.output
    assert np.isfinite(json.loads(result.stdout)["models"][0]["latency_ms"]["p50"])
