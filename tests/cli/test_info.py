"""``onnxgraph info``: the figures it reports are right, for people and for machines."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper, parser

from onnxgraph.cli import cli

MLP = os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")


def _info_json(path: str) -> dict:
    result = CliRunner().invoke(cli, ["info", path, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_describes_the_bundled_mlp():
    info = _info_json(MLP)
    proto = onnx.load(MLP)
    assert info["ir_version"] == proto.ir_version
    assert info["opset_imports"] == {"ai.onnx": 17}
    assert info["inputs"] == [{"name": "x", "dtype": "float32", "shape": ["batch", 784], "type": "float32[batch,784]"}]
    assert info["outputs"][0]["shape"] == ["batch", 10]
    assert info["nodes"]["by_op_type"] == {"Gemm": 2, "Relu": 1}
    expected_elements = sum(int(np.prod(t.dims)) for t in proto.graph.initializer)
    assert info["parameters"] == {"initializers": 4, "elements": expected_elements, "bytes": expected_elements * 4}
    assert info["external_data"] == [] and info["functions"] == []


def test_subgraph_nodes_are_counted_and_shared_initializers_once(tmp_path):
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17, "lib" : 1]>
        g (bool c, float[4] x) => (float[4] y, float[4] z) {
            y = If(c) <
                then_branch = t () => (float[4] a) { a = Mul(x, w) },
                else_branch = e () => (float[4] b) { b = Add(x, w) }
            >
            z = lib.Twice(y)
        }
        <domain: "lib", opset_import: ["" : 17]>
        Twice(t) => (u) { u = Add(t, t) }"""
    )
    model.graph.initializer.append(numpy_helper.from_array(np.ones(4, np.float32), "w"))
    path = str(tmp_path / "m.onnx")
    onnx.save(model, path)
    info = _info_json(path)
    assert info["nodes"]["by_op_type"] == {"If": 1, "Mul": 1, "Add": 1, "lib::Twice": 1}
    assert info["nodes"]["subgraphs"] == 2
    assert info["parameters"] == {"initializers": 1, "elements": 4, "bytes": 16}
    assert info["functions"] == [{"domain": "lib", "name": "Twice", "overload": "", "nodes": 1}]


def test_external_data_files_are_listed(tmp_path):
    weight = numpy_helper.from_array(np.zeros((32, 32), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])],
        [weight],
    )
    path = str(tmp_path / "m.onnx")
    onnx.save(helper.make_model(graph), path, save_as_external_data=True, location="w.bin", size_threshold=0)
    info = _info_json(path)
    assert info["external_data"] == [{"file": "w.bin", "bytes": 32 * 32 * 4, "tensors": 1}]


def test_table_output_for_people():
    result = CliRunner().invoke(cli, ["info", MLP])
    assert result.exit_code == 0
    for text in ("IR version", "Gemm", "float32[batch,784]", "203,530"):
        assert text in result.stdout


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "info" in result.stdout
