"""Sessions over the IR's own arrays: same outputs as a session of the serialized model, no weight copied."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
from onnx import helper, numpy_helper

import onnxgraph
from onnxgraph.runtime import ir_session as shared_sessions
from onnxgraph.runtime import sessions
from onnxgraph.runtime.ir_session import SHARED_MIN_BYTES, NotShareable, ir_session, open_session
from onnxgraph.runtime.sessions import create_session


def _model() -> onnx.ModelProto:
    """MatMuls over a 32x32 float32 weight and a 32x32 float16 one (both shared), a small float16
    bias and int64 shape (inline), and an If whose branches have their own initializers (inline)."""
    rng = np.random.default_rng(0)
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[n, 32] x, bool flag) => (float[n, 32] y, float[2] z) {
        h = MatMul(x, w)
        w16f = Cast<to=1>(w16)
        g = MatMul(x, w16f)
        s = Add(h, g)
        b32 = Cast<to=1>(b)
        hb = Add(s, b32)
        y = Reshape(hb, shape)
        z = If(flag) <then_branch = t () => (float[2] tz) <float[2] k = {1.0, 2.0}> { tz = Identity(k) },
                      else_branch = e () => (float[2] ez) <float[2] k = {3.0, 4.0}> { ez = Identity(k) }>
    }
    """
    model = onnx.parser.parse_model(text)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float16), "w16"),
            numpy_helper.from_array(rng.standard_normal(32).astype(np.float16), "b"),
            numpy_helper.from_array(np.array([-1, 32], dtype=np.int64), "shape"),
        ]
    )
    return model


def _feeds() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32), "flag": np.array(False)}


def test_outputs_match_a_session_of_the_serialized_model():
    proto = _model()
    expected = create_session(proto.SerializeToString(), optimization="disable").run(None, _feeds())
    handle = ir_session(onnxgraph.load(proto))
    actual = handle.run(_feeds())
    assert list(actual) == ["y", "z"]
    for e, a in zip(expected, actual.values()):
        np.testing.assert_array_equal(a, e)
    np.testing.assert_array_equal(actual["z"], [3.0, 4.0])  # the branch's inline initializer was read


def test_large_main_graph_initializers_are_the_irs_arrays_not_copies(monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "mkdtemp", None)  # and no file is written for it
    model = onnxgraph.load(_model())
    handle = ir_session(model)
    assert set(handle.shared) == {"w", "w16"}  # b (64 bytes) and shape are under SHARED_MIN_BYTES
    assert model.graph.initializers["b"].const_value.nbytes < SHARED_MIN_BYTES
    for name, value in handle.shared.items():
        assert value.data_ptr() == model.graph.initializers[name].const_value.numpy().ctypes.data


def test_prepacking_is_off(monkeypatch):
    seen = []
    real = sessions.create_session

    def spy(model, **kwargs):
        seen.append(kwargs)
        return real(model, **kwargs)

    monkeypatch.setattr(sessions, "create_session", spy)
    open_session(onnxgraph.load(_model()))
    assert seen and all(k["config_entries"]["session.disable_prepacking"] == "1" for k in seen)


def test_tensors_onnxruntime_cannot_take_as_ortvalues_stay_inline():
    """bfloat16 has no numpy dtype onnxruntime accepts: it travels in the protobuf and still runs."""
    weight = np.linspace(-1, 1, 1024, dtype=np.float32).reshape(32, 32)
    graph = helper.make_graph(
        [helper.make_node("Cast", ["w"], ["wf"], to=1), helper.make_node("MatMul", ["x", "wf"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", 1, ["n", 32])],
        [helper.make_tensor_value_info("y", 1, ["n", 32])],
        [helper.make_tensor("w", onnx.TensorProto.BFLOAT16, (32, 32), weight.ravel().tolist())],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    handle = ir_session(onnxgraph.load(proto))
    assert handle.shared == {}
    x = np.eye(32, dtype=np.float32)
    expected = create_session(proto.SerializeToString(), optimization="disable").run(None, {"x": x})[0]
    np.testing.assert_array_equal(handle.run({"x": x})["y"], expected)


def test_a_model_that_cannot_share_runs_from_a_temporary_copy(monkeypatch):
    def refuse(model, **kwargs):
        raise NotShareable("test")

    monkeypatch.setattr(shared_sessions, "ir_session", refuse)
    proto = _model()
    expected = create_session(proto.SerializeToString(), optimization="disable").run(None, _feeds())
    actual = open_session(onnxgraph.load(proto)).run(_feeds())
    for e, a in zip(expected, actual.values()):
        np.testing.assert_array_equal(a, e)
