"""Cases onnx.reference cannot evaluate (ConvTranspose with output_shape, Pad with negative pads),
checked on onnxruntime alone: the ops are linear in each input, so differences with unit steps are
exact up to rounding."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxgraph.autodiff import build_gradient
from onnxgraph.runtime.sessions import create_session


@pytest.mark.parametrize("output_shape", [5, 6, 7])
def test_conv_transpose_with_output_shape(output_shape):
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], output_shape=[output_shape])
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 1, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, output_shape])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    forward = create_session(model.SerializeToString())
    rng = np.random.default_rng(output_shape)
    feeds = {
        "x": rng.standard_normal((1, 2, 3)).astype(np.float32),
        "w": rng.standard_normal((2, 1, 3)).astype(np.float32),
    }
    (y,) = forward.run(None, feeds)
    upstream = rng.standard_normal(y.shape).astype(np.float32)
    grad = build_gradient(model, vjp=True, wrt=["x", "w"]).to_proto()
    onnx.checker.check_model(grad)
    analytic = dict(
        zip(
            ["x", "w"],
            create_session(grad.SerializeToString()).run(["x_grad", "w_grad"], {**feeds, "y_grad": upstream}),
        )
    )
    for name, value in feeds.items():
        numeric = np.zeros(value.size)
        for k in range(value.size):
            bumped = value.copy()
            bumped.reshape(-1)[k] += 1.0
            numeric[k] = np.sum(upstream * (forward.run(None, {**feeds, name: bumped})[0] - y))
        np.testing.assert_allclose(analytic[name].reshape(-1), numeric, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("pads", "dynamic"), [([0, 0, 1, -1, 0, 0, -1, 2], False), ([0, 0, 2, 1, 0, 0, 0, 1], True)])
def test_pad_with_negative_or_dynamic_pads(pads, dynamic):
    """onnx.reference cannot pad by negative amounts; onnxruntime can (the gradient pads by -pads)."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])]
    inits = []
    pads_value = helper.make_tensor("pads", TensorProto.INT64, [8], pads)
    if dynamic:
        inputs.append(helper.make_tensor_value_info("pads", TensorProto.INT64, [8]))
    else:
        inits.append(pads_value)
    out_shape = [1, 1, 4 + pads[2] + pads[6], 4 + pads[3] + pads[7]]
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["y"])],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    forward = create_session(model.SerializeToString())
    rng = np.random.default_rng(len(pads))
    feeds = {"x": rng.standard_normal((1, 1, 4, 4)).astype(np.float32)}
    if dynamic:
        feeds["pads"] = np.array(pads, dtype=np.int64)
    (y,) = forward.run(None, feeds)
    upstream = rng.standard_normal(y.shape).astype(np.float32)
    grad = build_gradient(model, vjp=True, wrt=["x"]).to_proto()
    (analytic,) = create_session(grad.SerializeToString()).run(["x_grad"], {**feeds, "y_grad": upstream})
    numeric = np.zeros(16)
    for k in range(16):
        bumped = feeds["x"].copy()
        bumped.reshape(-1)[k] += 1.0
        numeric[k] = np.sum(upstream * (forward.run(None, {**feeds, "x": bumped})[0] - y))
    np.testing.assert_allclose(analytic.reshape(-1), numeric, rtol=1e-5, atol=1e-5)
