"""Models onnxruntime rejects or cannot run are bad input: exit 2 and one clean line, never
"internal error", never onnxruntime's multi-line text."""

from __future__ import annotations

import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

from onnxgraph.cli import cli
from onnxgraph.runtime.sessions import first_line

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


def test_first_line_drops_onnxruntime_noise():
    message = (
        "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/graph/"
        "model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(const std::unordered_map"
        "<std::string, int>&, const onnxruntime::logging::Logger&, bool, const std::string&, int) ONNX Runtime "
        "only *guarantees* support for released opsets.\nsecond line"
    )
    assert first_line(RuntimeError(message)) == "ONNX Runtime only *guarantees* support for released opsets."
    assert first_line(RuntimeError("\n  \n")) == "RuntimeError"
