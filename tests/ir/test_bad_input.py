"""Bad model files fail with one clear error naming the file and the problem (library and CLI)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper, numpy_helper, parser

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.errors import ModelLoadError

F = onnx.TensorProto.FLOAT
MLP = os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")


def _graph_model(nodes, inputs=("x",), outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, F, [2]) for n in inputs],
        [helper.make_tensor_value_info(n, F, [2]) for n in outputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _serialized(nodes) -> bytes:
    return _graph_model(nodes).SerializeToString()


def _write(path, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _external_model(tmp_path) -> str:
    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, [1, 64])],
        [helper.make_tensor_value_info("y", F, [1, 64])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = str(tmp_path / "ext.onnx")
    onnx.save(model, path, save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    return path


def _bad_files(tmp_path) -> dict[str, tuple[str, str]]:
    """name -> (path, expected fragment of the message)."""
    with open(MLP, "rb") as f:
        good = f.read()
    rng = np.random.default_rng(0)
    ext = _external_model(tmp_path)
    os.remove(ext + ".data")
    return {
        "missing": (str(tmp_path / "nope.onnx"), "no such file"),
        "directory": (str(tmp_path), "is a directory"),
        "empty": (_write(tmp_path / "empty.onnx", b""), "is empty"),
        "truncated": (_write(tmp_path / "trunc.onnx", good[: len(good) // 3]), "not an ONNX model"),
        "random": (_write(tmp_path / "random.onnx", rng.bytes(4096)), "not an ONNX model"),
        "text": (_write(tmp_path / "text.onnx", b"this is a text file\nnot a model\n"), "not an ONNX model"),
        "missing external data": (ext, "external data file 'ext.onnx.data'"),
        "dangling input": (
            _write(tmp_path / "dangling.onnx", _serialized([helper.make_node("Relu", ["ghost"], ["y"])])),
            "reads 'ghost', which is not defined",
        ),
        "cycle": (
            _write(
                tmp_path / "cycle.onnx",
                _serialized(
                    [
                        helper.make_node("Add", ["x", "b"], ["a"], name="n1"),
                        helper.make_node("Relu", ["a"], ["b"], name="n2"),
                        helper.make_node("Identity", ["b"], ["y"]),
                    ]
                ),
            ),
            "cycle",
        ),
        "two writers": (
            _write(
                tmp_path / "twice.onnx",
                _serialized([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])]),
            ),
            "'y' is written twice",
        ),
    }


CASES = [
    "missing",
    "directory",
    "empty",
    "truncated",
    "random",
    "text",
    "missing external data",
    "dangling input",
    "cycle",
    "two writers",
]


@pytest.mark.parametrize("case", CASES)
def test_load_raises_a_clear_error(case, tmp_path):
    path, fragment = _bad_files(tmp_path)[case]
    with pytest.raises(ModelLoadError) as info:
        onnxgraph.load(path)
    message = str(info.value)
    assert message.startswith(path) and fragment in message
    assert "\n" not in message


@pytest.mark.parametrize("case", CASES)
def test_cli_prints_one_line_and_exits_2(case, tmp_path):
    path, fragment = _bad_files(tmp_path)[case]
    result = CliRunner().invoke(cli, ["info", path])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert path in lines[0] and fragment in lines[0]
    assert "Traceback" not in result.output


def test_debug_flag_shows_the_traceback(tmp_path):
    path = str(tmp_path / "nope.onnx")
    result = CliRunner().invoke(cli, ["--debug", "info", path])
    assert result.exit_code != 0
    assert isinstance(result.exception, ModelLoadError)


def test_external_data_file_too_short(tmp_path):
    path = _external_model(tmp_path)
    with open(path + ".data", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ModelLoadError, match="too short for tensor 'w'"):
        onnxgraph.load(path)


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    path = _external_model(tmp_path)
    proto = onnx.load(path, load_external_data=False)
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../elsewhere.data"
    _write(path, proto.SerializeToString())
    with pytest.raises(ModelLoadError, match="lies outside the model.s folder"):
        onnxgraph.load(path)


def test_a_subgraph_may_read_values_defined_later_in_the_outer_list_only_if_acyclic(tmp_path):
    """Out-of-order (but acyclic) graphs load and keep the file's order; they are not cycles."""
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] x) => (float[2] y) {
            y = Neg(a)
            a = Relu(x)
        }"""
    )
    loaded = onnxgraph.from_proto(model)
    assert [n.op_type for n in loaded.graph] == ["Neg", "Relu"]
    assert loaded.to_proto() == model
