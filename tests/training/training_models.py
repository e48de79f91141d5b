"""Small models for the training tests, built in code."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def scale_model(weight: np.ndarray | None = None) -> onnx.ModelProto:
    """``y = x * w`` (w of shape [4]): with the ``sum`` loss, dL/dw is the column sum of x."""
    w = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32) if weight is None else weight
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def loss_model() -> onnx.ModelProto:
    """A model whose output already is its loss: ``loss = sum((x * w)^2)``, plus ``y = x * w``."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "w"], ["y"]),
            helper.make_node("Mul", ["y", "y"], ["sq"]),
            helper.make_node("ReduceSum", ["sq"], ["my_loss"], keepdims=0),
        ],
        "own_loss",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [
            helper.make_tensor_value_info("my_loss", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
        ],
        [numpy_helper.from_array(np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32), "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def dropout_model(ratio: float = 0.3) -> onnx.ModelProto:
    """``y = Dropout(x * w, ratio, training_mode=True)`` as a training-mode export writes it (the ratio
    an initializer, the mode a Constant node)."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "w"], ["xw"]),
            helper.make_node("Constant", [], ["training"], value=numpy_helper.from_array(np.array(True), "t")),
            helper.make_node("Dropout", ["xw", "ratio", "training"], ["y"]),
        ],
        "dropout",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32), "w"),
            numpy_helper.from_array(np.array(ratio, dtype=np.float32), "ratio"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
