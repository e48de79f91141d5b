"""Lazy tensors, external data, and saving: atomic, streamed, switching to external data by itself."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxgraph
from onnxgraph.errors import ModelSaveError
from onnxgraph.runtime.sessions import create_session
from onnxgraph.serde import fileio

F = TensorProto.FLOAT


def _matmul_model(n: int = 64, layers: int = 3, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes, inits, current = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), f"w{i}"))
        out = "y" if i == layers - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [out]))
        current = out
    inits.append(numpy_helper.from_array(np.array([1.0], np.float32), "tiny"))
    nodes.append(helper.make_node("Add", ["y", "tiny"], ["z"]))
    graph = helper.make_graph(
        nodes,
        "mm",
        [helper.make_tensor_value_info("x", F, ["b", n])],
        [helper.make_tensor_value_info("z", F, ["b", n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _outputs(path: str, n: int = 64) -> np.ndarray:
    x = np.random.default_rng(1).standard_normal((2, n)).astype(np.float32)
    return create_session(path).run(None, {"x": x})[0]


def _leftovers(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith(".tmp")]


def test_inline_tensor_is_a_read_only_view_of_the_protobuf_bytes():
    model = onnxgraph.from_proto(_matmul_model())
    tensor = model.graph.initializers["w0"].const_value
    array = tensor.numpy()
    assert not array.flags.owndata and not array.flags.writeable
    assert tensor.numpy() is array  # cached: read once
    np.testing.assert_array_equal(array, numpy_helper.to_array(_matmul_model().graph.initializer[0]))


def test_external_data_is_mapped_lazily_and_only_when_read(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(_matmul_model(), path, save_as_external_data=True, location="m.data", size_threshold=1024)
    model = onnxgraph.load(path)
    w0 = model.graph.initializers["w0"].const_value
    assert w0.is_external and w0.external_path == str(tmp_path / "m.data")
    (mapped,) = model.external_files.values()
    assert mapped._map is None, "loading must not read external data"
    array = w0.numpy()
    assert mapped._map is not None and not array.flags.owndata
    np.testing.assert_array_equal(array, numpy_helper.to_array(_matmul_model().graph.initializer[0]))


def test_external_data_emptied_after_loading_is_a_clear_error(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(_matmul_model(), path, save_as_external_data=True, location="m.data", size_threshold=1024)
    model = onnxgraph.load(path)
    open(tmp_path / "m.data", "wb").close()  # another program truncates the file (this was a TypeError)
    with pytest.raises(OSError, match="m.data' is empty"):
        model.graph.initializers["w0"].const_value.numpy()


def test_a_tensor_without_data_or_external_data_says_so():
    from onnxgraph.tensor import Tensor

    with pytest.raises(ValueError, match="tensor 't' has no data"):
        Tensor(name="t").numpy()
    with pytest.raises(ValueError, match="tensor 'w0' has no external data"):
        _ = onnxgraph.from_proto(_matmul_model()).graph.initializers["w0"].const_value.external_span


def test_save_keeps_the_layout_and_outputs(tmp_path):
    source = str(tmp_path / "src.onnx")
    onnx.save(_matmul_model(), source, save_as_external_data=True, location="src.data", size_threshold=1024)
    out = str(tmp_path / "out.onnx")
    onnxgraph.save(onnxgraph.load(source), out)
    saved = onnx.load(out, load_external_data=False)
    external = {t.name for t in saved.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert external == {"w0", "w1", "w2"}  # the 4-byte 'tiny' stays inline as in the source
    assert os.path.exists(out + ".data")
    np.testing.assert_array_equal(_outputs(out), _outputs(source))


def test_save_auto_moves_large_tensors_to_external_data(tmp_path):
    out = str(tmp_path / "auto.onnx")
    onnxgraph.save(onnxgraph.from_proto(_matmul_model()), out, external_data="auto")
    saved = onnx.load(out, load_external_data=False)
    locations = {e.value for t in saved.graph.initializer for e in t.external_data if e.key == "location"}
    assert locations == {"auto.onnx.data"}
    assert os.path.getsize(out + ".data") >= 3 * 64 * 64 * 4
    np.testing.assert_array_equal(
        _outputs(out),
        create_session(_matmul_model()).run(
            None, {"x": np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32)}
        )[0],
    )


def test_save_switches_to_external_data_rather_than_exceed_the_protobuf_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "PROTOBUF_LIMIT", 64 * 64 * 4 * 2)
    monkeypatch.setattr(fileio, "_HEADROOM", 0)
    out = str(tmp_path / "big.onnx")
    onnxgraph.save(onnxgraph.from_proto(_matmul_model()), out)
    assert os.path.exists(out + ".data")
    assert os.path.getsize(out) < 64 * 64 * 4


def test_saving_over_the_source_model_keeps_its_data_valid(tmp_path):
    path = str(tmp_path / "m.onnx")
    onnx.save(_matmul_model(), path, save_as_external_data=True, location="m.onnx.data", size_threshold=1024)
    before = _outputs(path)
    model = onnxgraph.load(path)
    model.graph.initializers["w0"].const_value.numpy()  # the source data file is mapped
    onnxgraph.save(model, path)
    np.testing.assert_array_equal(_outputs(path), before)


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"the user's existing file")
    model = onnxgraph.from_proto(_matmul_model())

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(fileio, "export_model", broken)
    with pytest.raises(RuntimeError):
        onnxgraph.save(model, out, external_data="auto")
    assert out.read_bytes() == b"the user's existing file"
    assert not os.path.exists(str(out) + ".data")
    assert _leftovers(tmp_path) == []


def test_save_into_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSaveError, match="does not exist"):
        onnxgraph.save(onnxgraph.from_proto(_matmul_model()), tmp_path / "no" / "m.onnx")


def test_ir_version_is_kept_unless_asked(tmp_path):
    proto = _matmul_model()
    proto.ir_version = 7
    model = onnxgraph.from_proto(proto)
    onnxgraph.save(model, tmp_path / "a.onnx")
    onnxgraph.save(model, tmp_path / "b.onnx", ir_version=9)
    assert onnx.load(str(tmp_path / "a.onnx")).ir_version == 7
    assert onnx.load(str(tmp_path / "b.onnx")).ir_version == 9


def test_new_numpy_tensors_save_and_run(tmp_path):
    model = onnxgraph.from_proto(_matmul_model())
    w1 = model.graph.initializers["w1"]
    w1.const_value = onnxgraph.Tensor(np.eye(64, dtype=np.float32), "w1")
    out = str(tmp_path / "eye.onnx")
    onnxgraph.save(model, out, external_data="weights.bin")
    assert os.path.exists(tmp_path / "weights.bin")
    reloaded = onnxgraph.load(out)
    np.testing.assert_array_equal(reloaded.graph.initializers["w1"].const_value.numpy(), np.eye(64))
