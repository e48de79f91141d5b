"""Tensors whose type, shape and data disagree are refused at load, naming the tensor (issue 14)."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import onnxgraph
from onnxgraph.errors import ModelLoadError


def _model_with(tensor: onnx.TensorProto) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", [tensor.name], ["y"])],
        "g",
        [],
        [helper.make_tensor_value_info("y", tensor.data_type or onnx.TensorProto.FLOAT, None)],
        [tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _save(tmp_path, tensor: onnx.TensorProto) -> str:
    path = str(tmp_path / "m.onnx")
    with open(path, "wb") as f:
        f.write(_model_with(tensor).SerializeToString())
    return path


def _raw(name: str, elem_type: int, dims, raw: bytes) -> onnx.TensorProto:
    return onnx.TensorProto(name=name, data_type=elem_type, dims=dims, raw_data=raw)


def test_element_type_zero_refused(tmp_path):
    path = _save(tmp_path, _raw("bad_type", 0, [2], b"\0" * 8))
    with pytest.raises(ModelLoadError, match=r"tensor 'bad_type' has an unknown element type \(0\)"):
        onnxgraph.load(path)


def test_unknown_element_type_refused(tmp_path):
    path = _save(tmp_path, _raw("future", 999, [2], b"\0" * 8))
    with pytest.raises(ModelLoadError, match=r"tensor 'future' has an unknown element type \(999\)"):
        onnxgraph.load(path)


@pytest.mark.parametrize("length", [0, 7, 9, 16])
def test_raw_data_length_mismatch_refused(tmp_path, length):
    path = _save(tmp_path, _raw("w", onnx.TensorProto.FLOAT, [2], b"\0" * length))
    with pytest.raises(ModelLoadError, match=rf"tensor 'w' holds {length} bytes but float32\[2\] needs 8"):
        onnxgraph.load(path)


def test_typed_field_count_mismatch_refused(tmp_path):
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[3], float_data=[1.0, 2.0])
    with pytest.raises(ModelLoadError, match=r"tensor 'w' holds 2 values in float_data but float32\[3\] needs 3"):
        onnxgraph.load(_save(tmp_path, tensor))


def test_negative_dimension_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="tensor 'w' has a negative dimension"):
        onnxgraph.load(_save(tmp_path, _raw("w", onnx.TensorProto.FLOAT, [-1], b"")))


def test_non_utf8_string_refused(tmp_path):
    tensor = onnx.TensorProto(name="words", data_type=onnx.TensorProto.STRING, dims=[2])
    tensor.string_data.extend([b"ok", b"\xff\xfe"])
    with pytest.raises(ModelLoadError, match="tensor 'words': string 1 is not UTF-8"):
        onnxgraph.load(_save(tmp_path, tensor))


def test_valid_tensors_of_every_type_still_load(tmp_path):
    """Raw data of every type numpy can hold, sub-byte packed ones included, passes the size checks."""
    for elem_type in onnx.TensorProto.DataType.values():
        if elem_type in (onnx.TensorProto.UNDEFINED, onnx.TensorProto.STRING):
            continue
        try:
            dtype = helper.tensor_dtype_to_np_dtype(elem_type)
        except KeyError:
            continue
        array = np.zeros((3, 5), dtype=dtype)
        tensor = numpy_helper.from_array(array, "c")
        loaded = onnxgraph.load(_save(tmp_path, tensor))
        got = loaded.graph.initializers["c"].const_value.numpy()
        assert got.shape == (3, 5) and got.dtype == dtype, onnx.TensorProto.DataType.Name(elem_type)


def _external(tmp_path, **entries: str) -> str:
    data = np.arange(6, dtype=np.float32)
    (tmp_path / "w.data").write_bytes(data.tobytes())
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[2, 3])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": "w.data", **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return _save(tmp_path, tensor)


def test_external_length_zero_refused(tmp_path, run):
    """A length of 0 used to verify against the source file, then save a model onnxruntime cannot load."""
    path = _external(tmp_path, offset="0", length="0")
    with pytest.raises(ModelLoadError, match=r"tensor 'w': external data length 0 does not match float32\[2, 3\]"):
        onnxgraph.load(path)
    for command in (("grad", "--vjp"), ("convert",), ("optimize",)):
        result = run(*command, path, "-o", tmp_path / "out.onnx")
        assert result.exit_code == 2 and "external data length 0" in result.stderr, command
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "w.data"]


@pytest.mark.parametrize("key,value", [("offset", "1.5"), ("length", "abc"), ("offset", "-4"), ("length", " 24")])
def test_external_offset_or_length_not_an_integer_refused(tmp_path, key, value):
    path = _external(tmp_path, **{key: value})
    with pytest.raises(ModelLoadError, match=f"tensor 'w': external data {key} '{value}' is not a whole number"):
        onnxgraph.load(path)


def test_external_data_past_file_end_refused(tmp_path):
    path = _external(tmp_path, offset="8", length="24")
    with pytest.raises(ModelLoadError, match="'w.data' is too short for tensor 'w'"):
        onnxgraph.load(path)


def test_external_data_that_fits_still_loads(tmp_path):
    path = _external(tmp_path, offset="0", length="24")
    np.testing.assert_array_equal(
        onnxgraph.load(path).graph.initializers["w"].const_value.numpy(), np.arange(6, dtype=np.float32).reshape(2, 3)
    )


def test_float_literal_out_of_range_refused(tmp_path, run):
    path = tmp_path / "m.onnxtxt"
    path.write_text(
        '<ir_version: 8, opset_import: ["" : 17]>\n'
        "g (float[2] x) => (float[2] y)\n"
        "<float[2] huge = {1e4002, 1.0}>\n"
        "{ y = Add(x, huge) }\n"
    )
    with pytest.raises(ModelLoadError, match=r"tensor 'huge', line 3: literal '1e4002' is out of range"):
        onnxgraph.load(path)
    result = run("info", path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "1e4002" in result.stderr


def test_validation_reads_no_external_data(tmp_path, monkeypatch):
    """Load stays lazy: the checks use sizes only, the data file is neither opened nor mapped."""
    path = _external(tmp_path, offset="0", length="24")
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    model = onnxgraph.load(path)
    assert not any(p.endswith("w.data") for p in opened)
    assert model.graph.initializers["w"].const_value.is_external
