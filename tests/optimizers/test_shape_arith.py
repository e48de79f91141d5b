"""The numpy fast path of constant folding agrees with onnxruntime, op by op."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from onnxgraph.node import Node
from onnxgraph.optimizers import shape_arith
from onnxgraph.runtime.sessions import create_session

i64 = np.int64
CASES = [
    ("Shape", [np.zeros((2, 3, 4), np.float32)], {"start": 1}),
    ("Shape", [np.zeros((2, 3, 4), np.float32)], {"start": -2, "end": -1}),
    ("Size", [np.zeros((2, 3), np.float32)], {}),
    ("Cast", [np.array([3, -1], i64)], {"to": onnx.TensorProto.INT32}),
    ("Unsqueeze", [np.array([2, 3], i64), np.array([-1, 0], i64)], {}),
    ("Squeeze", [np.array([[5]], i64), np.array([0], i64)], {}),
    ("Concat", [np.array([1], i64), np.array([2, 3], i64)], {"axis": 0}),
    ("Gather", [np.array([7, 8, 9], i64), np.array(-1, i64)], {"axis": 0}),
    ("Gather", [np.array([7, 8, 9], i64), np.array([0, 2], i64)], {"axis": 0}),
    (
        "Slice",
        [
            np.arange(6, dtype=i64),
            np.array([-1], i64),
            np.array([-(10**18)], i64),
            np.array([0], i64),
            np.array([-2], i64),
        ],
        {},
    ),
    ("Slice", [np.arange(6, dtype=i64), np.array([1], i64), np.array([10**18], i64)], {}),
    ("Add", [np.array([1, 2], i64), np.array(3, i64)], {}),
    ("Sub", [np.array([1, 2], i64), np.array([5, 5], i64)], {}),
    ("Mul", [np.array([4, -2], i64), np.array([3, 3], i64)], {}),
    ("Div", [np.array([7, -7, 7, -7], i64), np.array([2, 2, -2, -2], i64)], {}),
    ("Mod", [np.array([2, -7, 7, -7], i64), np.array([3, 3, -3, -3], i64)], {}),
    ("Mod", [np.array([2, -7, 7, -7], i64), np.array([3, 3, -3, -3], i64)], {"fmod": 1}),
    ("Max", [np.array([1, 9], i64), np.array([5, 5], i64)], {}),
    ("Min", [np.array([1, 9], i64), np.array([5, 5], i64)], {}),
    ("Neg", [np.array([1, -2], i64)], {}),
    ("Equal", [np.array([1, 2], i64), np.array([1, 3], i64)], {}),
    ("Where", [np.array([True, False]), np.array([1, 2], i64), np.array([3, 4], i64)], {}),
    ("Range", [np.array(10, i64), np.array(0, i64), np.array(-3, i64)], {}),
    ("Reshape", [np.arange(6, dtype=i64).reshape(2, 3), np.array([0, -1], i64)], {}),
    ("Reshape", [np.arange(6, dtype=i64).reshape(2, 3), np.array([3, 2], i64)], {"allowzero": 1}),
]


def _onnxruntime(op: str, arrays: list[np.ndarray], attrs: dict) -> np.ndarray:
    names = [f"in{i}" for i in range(len(arrays))]
    graph = helper.make_graph(
        [helper.make_node(op, names, ["out"], **attrs)],
        "g",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in zip(names, arrays)
        ],
        [helper.make_empty_tensor_value_info("out")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return create_session(model, optimization="disable").run(None, dict(zip(names, arrays)))[0]


@pytest.mark.parametrize(("op", "arrays", "attrs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_numpy_path_matches_onnxruntime(op, arrays, attrs):
    node = Node("", op, [], attrs)
    result = shape_arith.evaluate(node, arrays)
    assert result is not None, "the fast path should handle this case"
    expected = _onnxruntime(op, arrays, attrs)
    assert result[0].dtype == expected.dtype and result[0].shape == expected.shape
    np.testing.assert_array_equal(result[0], expected)


def test_float_data_and_large_inputs_are_left_to_onnxruntime():
    assert shape_arith.evaluate(Node("", "Add", [], {}), [np.ones(2, np.float32), np.ones(2, np.float32)]) is None
    big = np.arange(shape_arith.SMALL + 1, dtype=i64)
    assert shape_arith.evaluate(Node("", "Neg", [], {}), [big]) is None
    assert shape_arith.evaluate(Node("", "Div", [], {}), [np.array([1], i64), np.array([0], i64)]) is None
    assert shape_arith.evaluate(Node("", "Mod", [], {}), [np.array([1], i64), np.array([0], i64)]) is None
