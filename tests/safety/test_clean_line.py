"""Errors stay one clean line: no library logging, no control characters from names (issue 14)."""

from __future__ import annotations

import warnings

import click
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

from onnxgraph.cli.errors import CommandGroup
from onnxgraph.cli.output import escape, printable

HOSTILE = "w\r\n\x1b[2J\x1b]0;title\x07\u202e"


def _save(path, model: onnx.ModelProto) -> str:
    model.ir_version = 8
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return str(path)


def test_printable_escapes_every_control_character():
    assert printable(HOSTILE) == "w\\r\\n\\x1b[2J\\x1b]0;title\\x07\\u202e"
    assert printable("名前 café [x]") == "名前 café [x]"
    assert escape("[bold]a\n") == "\\[bold]a\\n"


def test_control_characters_escaped_in_errors(tmp_path, run):
    tensor = onnx.TensorProto(name=HOSTILE, data_type=0, dims=[1], raw_data=b"\0")
    graph = helper.make_graph(
        [helper.make_node("Identity", [HOSTILE], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", 1, None)],
        [tensor],
    )
    path = _save(tmp_path / "m.onnx", helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    result = run("info", path)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "\r" not in result.stderr and "\x1b" not in result.stderr
    assert "tensor 'w\\r\\n\\x1b[2J" in result.stderr


def test_control_characters_escaped_in_tables(tmp_path, run):
    graph = helper.make_graph(
        [helper.make_node("Relu", [HOSTILE], ["out\x1b[31m"], name="node\rname")],
        "g",
        [helper.make_tensor_value_info(HOSTILE, 1, [2])],
        [helper.make_tensor_value_info("out\x1b[31m", 1, [2])],
    )
    path = _save(tmp_path / "m.onnx", helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    result = run("info", path)
    assert result.exit_code == 0, result.output
    assert not any(c in result.stdout for c in "\r\x1b\x07\u202e")
    assert "out\\x1b[31m" in result.stdout


def test_onnxruntime_logs_nothing_on_failure(tmp_path, run, capfd):
    """A model that fails inside onnxruntime: the one line says why, onnxruntime's own log stays silent."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", 1, [4])],
        [helper.make_tensor_value_info("y", 1, None)],
        [helper.make_tensor("shape", onnx.TensorProto.INT64, [1], [3])],
    )
    path = _save(tmp_path / "m.onnx", helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    result = run("optimize", path, "-o", tmp_path / "o.onnx", "--passes", "dce")
    captured = capfd.readouterr()
    assert result.exit_code in (1, 2) and result.stderr.count("\n") == 1, result.stderr
    assert "[E:onnxruntime" not in captured.err and "[W:onnxruntime" not in captured.err


def test_reference_runtime_warnings_silenced():
    from onnx.reference import ReferenceEvaluator

    graph = helper.make_graph(
        [helper.make_node("Exp", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", 1, [1])],
        [helper.make_tensor_value_info("y", 1, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    group = CommandGroup()

    @group.command()
    def overflow() -> None:
        (y,) = ReferenceEvaluator(model).run(None, {"x": np.array([1000], np.float32)})
        click.echo(str(y[0]))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = CliRunner().invoke(group, ["overflow"])
    assert result.exit_code == 0 and result.stdout.strip() == "inf", result.output
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_json_output_is_strict_json_with_non_finite_figures_as_text(tmp_path):
    """A missing output's infinite error, a diverged value's NaN: JSON has no number for them, and
    Python's json would write the invalid tokens Infinity and NaN."""
    import json

    from onnxgraph.cli.output import write_json
    from onnxgraph.runtime.compare import OutputComparison

    missing = OutputComparison("y", float("inf"), float("nan"), 4, 4, 1e-4, 1e-5, note="missing in B")
    path = tmp_path / "report.json"
    write_json({"outputs": [missing.to_dict()], "ratio": (-float("inf"), 1.0)}, str(path))
    data = json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"invalid JSON token {token}"))
    assert data["outputs"][0]["max_abs"] == "inf" and data["outputs"][0]["max_rel"] == "nan"
    assert data["outputs"][0]["passed"] is False and data["ratio"] == ["-inf", 1.0]
