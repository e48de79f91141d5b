"""Inline weights stay in a memory map of the model file at load and are streamed at save."""

from __future__ import annotations

import mmap
import os
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxgraph
from onnxgraph import fsutil
from onnxgraph.errors import ModelLoadError
from onnxgraph.runtime.sessions import create_session
from onnxgraph.serde.exporter import export_model
from onnxgraph.serde.fileio import read_proto
from onnxgraph.tensor import Tensor

F = TensorProto.FLOAT


def _model(seed: int = 0) -> onnx.ModelProto:
    """MatMul weights (mapped), a small bias (left in the proto), an int8 table, a float16 weight,
    a Constant node and an If branch with its own large initializer."""
    rng = np.random.default_rng(seed)
    w0 = rng.standard_normal((64, 32)).astype(np.float32)
    w1 = rng.standard_normal((32, 16)).astype(np.float16)
    branch_w = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "bw")
    then = helper.make_graph(
        [helper.make_node("MatMul", ["h2", "bw"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, None)]
    )
    then.initializer.append(branch_w)
    other = helper.make_graph(
        [helper.make_node("Identity", ["h2"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, None)]
    )
    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["h0"]),
        helper.make_node("Add", ["h0", "bias"], ["h1"]),
        helper.make_node("Cast", ["h1"], ["h1h"], to=TensorProto.FLOAT16),
        helper.make_node("MatMul", ["h1h", "w1"], ["h2h"]),
        helper.make_node("Cast", ["h2h"], ["h2"], to=F),
        helper.make_node("Constant", [], ["flag"], value=numpy_helper.from_array(np.array(True), "flag")),
        helper.make_node("If", ["flag"], ["y"], then_branch=then, else_branch=other),
        helper.make_node("Gather", ["table", "idx"], ["g"]),
    ]
    inits = [
        numpy_helper.from_array(w0, "w0"),
        numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "bias"),
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(rng.integers(-128, 127, (256, 8), dtype=np.int8), "table"),
    ]
    graph = helper.make_graph(
        nodes,
        "m",
        [
            helper.make_tensor_value_info("x", F, ["b", 64]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, [3]),
        ],
        [
            helper.make_tensor_value_info("y", F, ["b", 16]),
            helper.make_tensor_value_info("g", TensorProto.INT8, [3, 8]),
        ],
        inits,
    )
    graph.doc_string = "after the initializers"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
    model.ir_version = 8
    return model


def _saved(tmp_path, proto: onnx.ModelProto | None = None) -> str:
    path = str(tmp_path / "m.onnx")
    onnx.save(proto or _model(), path)
    return path


def _feeds() -> dict[str, np.ndarray]:
    return {
        "x": np.random.default_rng(1).standard_normal((2, 64)).astype(np.float32),
        "idx": np.array([0, 5, 255]),
    }


def test_large_inline_initializers_are_views_of_a_map_of_the_file(tmp_path):
    path = _saved(tmp_path)
    model = onnxgraph.load(path)
    data = open(path, "rb").read()
    for name in ("w0", "w1", "table"):
        tensor = model.graph.initializers[name].const_value
        assert isinstance(tensor, Tensor) and not tensor.is_external
        span = tensor.file_span
        assert span is not None and span[0] == os.path.abspath(path) and span[2] == tensor.nbytes
        array = tensor.numpy()
        base = array
        while isinstance(base, np.ndarray):  # reshaped array <- flat array <- memoryview <- the map
            base = base.base
        mapped = base.obj
        assert isinstance(mapped, mmap.mmap)
        assert np.shares_memory(array, np.frombuffer(mapped, np.uint8)), "a copy, not a view of the file"
        assert not array.flags.writeable
        assert data[span[1] : span[1] + span[2]] == array.tobytes()
    small = model.graph.initializers["bias"].const_value
    assert small.file_span is None  # under 1 KiB: left in the (small) parsed proto


def test_every_tensor_loads_as_onnx_reads_it(tmp_path):
    proto = _model()
    model = onnxgraph.load(_saved(tmp_path, proto))
    for expected in proto.graph.initializer:
        actual = model.graph.initializers[expected.name].const_value.numpy()
        reference = numpy_helper.to_array(expected)
        assert actual.dtype == reference.dtype and actual.shape == reference.shape
        np.testing.assert_array_equal(actual, reference)
    branch = next(n for n in model.graph if n.op_type == "If").attributes["then_branch"].value
    then = next(a.g for a in proto.graph.node[6].attribute if a.name == "then_branch")
    np.testing.assert_array_equal(
        branch.initializers["bw"].const_value.numpy(), numpy_helper.to_array(then.initializer[0])
    )


def test_save_streams_the_same_bytes_as_serializing_the_whole_proto(tmp_path):
    path = _saved(tmp_path)
    whole = export_model(onnxgraph.load(open(path, "rb").read())).SerializeToString()  # parsed in full
    out = tmp_path / "out.onnx"
    onnxgraph.save(onnxgraph.load(path), out)
    assert out.read_bytes() == whole
    assert out.read_bytes() == open(path, "rb").read()  # and here, the file itself


def test_changed_and_new_weights_are_streamed_and_run_the_same(tmp_path):
    path = _saved(tmp_path)
    model = onnxgraph.load(path)
    w0 = model.graph.initializers["w0"]
    doubled = w0.const_value.numpy() * 2
    w0.const_value = Tensor(doubled, "w0")
    model.graph.initializers["table"].const_value = Tensor(np.arange(2048, dtype=np.int8).reshape(256, 8), "table")
    out = str(tmp_path / "out.onnx")
    onnxgraph.save(model, out)
    onnx.checker.check_model(out)
    assert open(out, "rb").read() == export_model(model).SerializeToString()
    reloaded = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
    np.testing.assert_array_equal(reloaded["w0"], doubled)

    expected_proto = _model()
    expected_proto.graph.initializer[0].CopyFrom(numpy_helper.from_array(doubled, "w0"))
    expected_proto.graph.initializer[3].CopyFrom(
        numpy_helper.from_array(np.arange(2048, dtype=np.int8).reshape(256, 8), "table")
    )
    expected = create_session(expected_proto).run(None, _feeds())
    actual = create_session(out).run(None, _feeds())
    for a, b in zip(actual, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_saving_over_the_source_keeps_its_mapped_weights_valid(tmp_path):
    path = _saved(tmp_path)
    before = create_session(path).run(None, _feeds())
    model = onnxgraph.load(path)
    onnxgraph.save(model, path)  # replaced by rename: the old file stays mapped until dropped
    onnxgraph.save(model, tmp_path / "again.onnx")
    for a, b in zip(create_session(str(tmp_path / "again.onnx")).run(None, _feeds()), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_kernel_copy_unavailable_falls_back_to_memory(tmp_path, monkeypatch):
    path = _saved(tmp_path)

    def refuse(*args):
        raise OSError(18, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    out = tmp_path / "out.onnx"
    onnxgraph.save(onnxgraph.load(path), out)
    assert out.read_bytes() == open(path, "rb").read()


def test_a_written_through_destination_gets_the_whole_model(tmp_path):
    path = _saved(tmp_path)
    read, write = os.pipe()
    chunks = []

    def drain():
        with os.fdopen(read, "rb") as f:
            chunks.append(f.read())

    reader = threading.Thread(target=drain)
    reader.start()
    onnxgraph.save(onnxgraph.load(path), f"/proc/self/fd/{write}")
    os.close(write)
    reader.join()
    assert chunks[0] == open(path, "rb").read()


def test_external_and_mixed_layouts_round_trip(tmp_path):
    path = _saved(tmp_path)
    model = onnxgraph.load(path)
    ext = tmp_path / "ext.onnx"
    onnxgraph.save(model, ext, external_data="auto")
    assert os.path.getsize(ext) < 4096 and os.path.exists(str(ext) + ".data")
    back = onnxgraph.load(ext)
    assert back.graph.initializers["w0"].const_value.is_external
    inline = tmp_path / "inline.onnx"
    onnxgraph.save(back, inline, external_data=False)
    assert inline.read_bytes() == open(path, "rb").read()


def test_a_model_with_inline_and_external_weights_keeps_each_where_it_was(tmp_path):
    proto = _model()
    w0 = proto.graph.initializer[0]
    (tmp_path / "w0.bin").write_bytes(w0.raw_data)
    onnx.external_data_helper.set_external_data(w0, "w0.bin")
    w0.ClearField("raw_data")
    path = _saved(tmp_path, proto)
    model = onnxgraph.load(path)
    assert model.graph.initializers["w0"].const_value.is_external
    assert model.graph.initializers["w1"].const_value.file_span is not None
    mixed = tmp_path / "mixed.onnx"
    onnxgraph.save(model, mixed)
    kinds = {t.name: t.data_location for t in onnx.load(str(mixed), load_external_data=False).graph.initializer}
    assert kinds["w0"] == TensorProto.EXTERNAL and kinds["w1"] == kinds["table"] == TensorProto.DEFAULT
    onnx.checker.check_model(str(mixed))
    expected = create_session(_model()).run(None, _feeds())
    for a, b in zip(create_session(str(mixed)).run(None, _feeds()), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_mapped_tensor_of_the_wrong_size_is_refused(tmp_path):
    proto = _model()
    del proto.graph.initializer[0].dims[:]
    proto.graph.initializer[0].dims.extend([64, 33])  # 8,192 bytes of data for 8,448
    path = _saved(tmp_path, proto)
    with pytest.raises(ModelLoadError, match="'w0' holds 8192 bytes but float32\\[64, 33\\] needs 8448"):
        onnxgraph.load(path)


def test_a_file_the_scan_cannot_follow_is_parsed_whole(tmp_path):
    path = _saved(tmp_path)
    data = open(path, "rb").read()
    graph = _model().graph
    # protobuf merges a second occurrence of `graph` into the first: here, one more doc_string
    extra = onnx.GraphProto(doc_string="merged").SerializeToString()
    (tmp_path / "twice.onnx").write_bytes(data + b"\x3a" + bytes([len(extra)]) + extra)
    model = onnxgraph.load(tmp_path / "twice.onnx")
    assert model.graph.doc_string == "merged" and len(model.graph.initializers) == len(graph.initializer)
    assert model.graph.initializers["w0"].const_value.file_span is None


def test_structure_only_read_leaves_out_large_tensor_data(tmp_path):
    path = _saved(tmp_path)
    proto = read_proto(path, tensor_data=False)
    w0 = next(t for t in proto.graph.initializer if t.name == "w0")
    assert not w0.raw_data and list(w0.dims) == [64, 32] and w0.data_location == TensorProto.DEFAULT
    assert len(proto.graph.node) == 8 and next(t for t in proto.graph.initializer if t.name == "bias").raw_data


def test_copy_file_span_undoes_a_partial_copy(tmp_path, monkeypatch):
    source = tmp_path / "src"
    source.write_bytes(bytes(range(256)) * 64)
    calls = []
    real = os.copy_file_range

    def flaky(src, dst, count, offset_src=None):
        calls.append(count)
        if len(calls) > 1:
            raise OSError(5, "I/O error")
        return real(src, dst, 100, offset_src)

    monkeypatch.setattr(os, "copy_file_range", flaky)
    with open(tmp_path / "dst", "wb") as f:
        f.write(b"head")
        assert not fsutil.copy_file_span(str(source), 10, 1000, f)
        f.write(b"tail")
    assert (tmp_path / "dst").read_bytes() == b"headtail"


def test_a_copy_of_a_mapped_tensor_views_the_same_bytes(tmp_path):
    tensor = onnxgraph.load(_saved(tmp_path)).graph.initializers["w0"].const_value
    copy = tensor.copy()
    assert copy is not tensor and copy.file_span == tensor.file_span
    assert np.shares_memory(copy.numpy(), tensor.numpy())


@pytest.mark.parametrize("elements", [256, 5000, 600_000])  # lengths of 2, 3 and 4 varint bytes
def test_lengths_of_every_varint_size_are_spliced_right(tmp_path, elements):
    weight = np.arange(elements, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", F, [elements])],
        [helper.make_tensor_value_info("y", F, [elements])],
        [numpy_helper.from_array(weight, "w")],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = _saved(tmp_path, proto)
    model = onnxgraph.load(path)
    assert model.graph.initializers["w"].const_value.file_span is not None
    np.testing.assert_array_equal(model.graph.initializers["w"].const_value.numpy(), weight)
    out = tmp_path / "out.onnx"
    onnxgraph.save(model, out)
    assert out.read_bytes() == proto.SerializeToString()


def test_loading_and_the_output_guard_never_read_the_whole_file(tmp_path, monkeypatch):
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.serde import fileio

    path = _saved(tmp_path)
    (tmp_path / "o.onnx").write_bytes(b"an existing output: the guard checks it is no file the model reads")

    def whole_file(name: str) -> bytes:
        raise AssertionError(f"{name} was read into memory whole")

    monkeypatch.setattr(fileio, "_read_bytes", whole_file)
    check_outputs([Output(str(tmp_path / "o.onnx"), "-o", model=True)], models=[path])
    assert onnxgraph.load(path).graph.initializers["w0"].const_value.file_span is not None


def test_save_puts_no_large_tensor_into_a_proto(tmp_path, monkeypatch):
    path = _saved(tmp_path)
    model = onnxgraph.load(path)
    model.graph.initializers["w0"].const_value = Tensor(np.ones((64, 32), np.float32), "w0")  # one in memory too
    original = Tensor.to_proto

    def small_only(self: Tensor, name: str | None = None) -> onnx.TensorProto:
        assert self.nbytes < 1024 or self.name == "bw", f"{self.name} ({self.nbytes} bytes) copied into a proto"
        return original(self, name)

    monkeypatch.setattr(Tensor, "to_proto", small_only)
    onnxgraph.save(model, tmp_path / "out.onnx")  # "bw" lives in an If branch: subgraphs are exported whole
    saved = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "out.onnx")).graph.initializer}
    np.testing.assert_array_equal(saved["w0"], np.ones((64, 32), np.float32))
    np.testing.assert_array_equal(saved["w1"], numpy_helper.to_array(_model().graph.initializer[2]))
