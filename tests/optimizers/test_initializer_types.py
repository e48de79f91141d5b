"""Initializers read from a file carry no declared type (IR >= 4); passes that read shapes must still see
theirs, or MatMul+Add into Gemm and the shape-reading no-op cases never fire on real models."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxgraph
from onnxgraph.optimizers import optimize
from onnxgraph.shape_inference import annotate_types


def _linear_model(path) -> str:
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return str(path)


def test_annotate_types_gives_file_initializers_their_tensor_type(tmp_path):
    model = onnxgraph.load(_linear_model(tmp_path / "m.onnx"))
    assert model.graph.initializers["w"].type is None  # nothing declared in the file
    annotate_types(model)
    assert model.graph.initializers["w"].elem_type == TensorProto.FLOAT
    assert model.graph.initializers["w"].shape == (8, 4)


def test_matmul_add_from_a_file_becomes_gemm(tmp_path):
    path = _linear_model(tmp_path / "m.onnx")
    optimized, report = optimize(path)
    assert report.ok and not report.rollbacks
    assert [n.op_type for n in optimized.graph] == ["Gemm"]
    out = tmp_path / "o.onnx"
    onnxgraph.save(optimized, out)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    want = ort.InferenceSession(path).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out)).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
