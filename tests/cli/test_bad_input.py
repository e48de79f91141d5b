"""Models onnxruntime rejects or cannot run are bad input: exit 2 and one clean line, never
"internal error", never onnxruntime's multi-line text."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

from onnxgraph.cli import cli
from onnxgraph.errors import one_line
from onnxgraph.runtime.sessions import RUN_BUDGET_ENV

MODELS = {
    "unreleased_opset": '<ir_version: 8, opset_import: ["" : 999]>\ng (float[2] x) => (float[2] y) { y = Relu(x) }',
    "huge_constant_of_shape": (
        '<ir_version: 8, opset_import: ["" : 17]>\ng (float[2] x) => (float[2] y) {\n'
        "  s = Constant<value = int64[1] {10000000000}>()\n  c = ConstantOfShape(s)\n  r = ReduceSum(c)\n"
        "  y = Add(x, r)\n}"
    ),
    "type_error": (
        '<ir_version: 8, opset_import: ["" : 17]>\ng (float[2] x) => (float[2] y) {\n'
        "  i = Cast<to = 7>(x)\n  y = Add(x, i)\n}"
    ),
}
COMMANDS = {
    "optimize": ["optimize", "-o", "{out}"],
    "convert": ["convert", "--fp16", "-o", "{out}"],
    "bench": ["bench", "--runs", "2", "--warmup", "1"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(MODELS))
def test_unrunnable_model_is_bad_input(tmp_path, case, command):
    source = tmp_path / f"{case}.onnx"
    onnx.save(onnx.parser.parse_model(MODELS[case]), source)
    out = tmp_path / "out.onnx"
    args = [a.replace("{out}", str(out)) for a in COMMANDS[command]]
    result = CliRunner().invoke(cli, [*args, str(source)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {source}: ")
    for noise in ("internal error", "[ONNXRuntimeError]", "onnxruntime_src", "Load model from"):
        assert noise not in line
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [source.name]


def test_one_line_drops_onnxruntime_noise():
    message = (
        "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/graph/"
        "model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::unordered_map"
        "<std::string, int>&, const onnxruntime::logging::Logger&, bool, const std::string&, int) ONNX Runtime "
        "only *guarantees* support for released opsets.\nsecond line"
    )
    assert one_line(RuntimeError(message)) == "ONNX Runtime only *guarantees* support for released opsets."
    assert one_line(RuntimeError("\n  \n")) == "RuntimeError"


def _endless_loop() -> onnx.ModelProto:
    """y = x + 1, repeated 10**12 times by a Loop (a constant trip count nothing can finish)."""
    from onnx import TensorProto, helper, numpy_helper

    f, scalar = TensorProto.FLOAT, []
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["acc_in", "one"], ["acc"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, scalar),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, scalar),
            helper.make_tensor_value_info("acc_in", f, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, scalar),
            helper.make_tensor_value_info("acc", f, [1]),
        ],
    )
    inits = [
        numpy_helper.from_array(np.array(10**12, np.int64), "trip"),
        numpy_helper.from_array(np.ones(1, np.float32), "one"),
    ]
    graph = helper.make_graph(
        [helper.make_node("Loop", ["trip", "", "x"], ["y"], body=body)],
        "g",
        [helper.make_tensor_value_info("x", f, [1])],
        [helper.make_tensor_value_info("y", f, [1])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_run_past_the_budget_is_stopped_and_named(tmp_path, monkeypatch, command):
    monkeypatch.setenv(RUN_BUDGET_ENV, "0.5")
    source = tmp_path / "loop.onnx"
    onnx.save(_endless_loop(), source)
    out = tmp_path / "out.onnx"
    args = [a.replace("{out}", str(out)) for a in COMMANDS[command]]
    result = CliRunner().invoke(cli, [*args, str(source)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    # stopped inside the run (the 0.5 s budget) or, where verification runs in a child, at the child's
    # timeout (twice the budget) when starting the child took the rest: both name the setting
    assert line.startswith(f"error: {source}: ") and f"{RUN_BUDGET_ENV}=SECONDS" in line
    assert not out.exists()


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_inputs_too_large_to_generate_are_refused_before_allocating(tmp_path, command):
    source = tmp_path / "wide.onnx"
    text = (
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "g (float[100000,100000] x) => (float[100000,100000] y) { y = Relu(x) }"
    )
    onnx.save(onnx.parser.parse_model(text), source)
    out = tmp_path / "out.onnx"
    args = [a.replace("{out}", str(out)) for a in COMMANDS[command]]
    result = CliRunner().invoke(cli, [*args, str(source)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "10,000,000,000 elements, over the budget of 268,435,456" in line and "--input-shape" in line
    assert not out.exists()
