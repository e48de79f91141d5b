"""Builders for the safety suite: a small model whose weight can live in any external file."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import onnx
import pytest
from click.testing import CliRunner, Result
from onnx import helper

WEIGHT = np.arange(16, dtype=np.float32).reshape(4, 4) / 10


def model_proto(weight: onnx.TensorProto) -> onnx.ModelProto:
    """y = x @ w + 1 with the given weight tensor ``w``."""
    one = helper.make_tensor("one", onnx.TensorProto.FLOAT, [4], [1.0] * 4)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "one"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
        [weight, one],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def external_weight(location: str, **entries: str) -> onnx.TensorProto:
    """The weight ``w`` as an external-data reference (``entries`` override offset and length)."""
    tensor = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[4, 4])
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(WEIGHT.nbytes), **entries}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


@pytest.fixture
def write_model() -> Callable[..., str]:
    """``write_model(path, location=None, data_path=None)``: the model at ``path``, its weight inline or in
    the external file ``location`` (written at ``data_path``, default beside the model)."""

    def write(path, location: str | None = None, data_path=None, **entries: str) -> str:
        path = os.fspath(path)
        if location is None:
            weight = onnx.numpy_helper.from_array(WEIGHT, "w")
        else:
            weight = external_weight(location, **entries)
            data_path = data_path or os.path.join(os.path.dirname(path), location)
            with open(data_path, "wb") as f:
                f.write(WEIGHT.tobytes())
        with open(path, "wb") as f:
            f.write(model_proto(weight).SerializeToString())
        return path

    return write


@pytest.fixture
def run() -> Callable[..., Result]:
    """Invoke the command line in-process: ``run("optimize", "m.onnx", "-o", "o.onnx")``."""
    from onnxgraph.cli import cli

    def invoke(*args) -> Result:
        return CliRunner().invoke(cli, [os.fspath(a) for a in args])

    return invoke


def snapshot(folder) -> dict[str, bytes]:
    """Every file in ``folder`` with its bytes (symbolic links as their target text)."""
    result = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        result[name] = os.readlink(path).encode() if os.path.islink(path) else open(path, "rb").read()
    return result


@pytest.fixture
def files() -> Callable[[str], dict[str, bytes]]:
    """``files(folder)``: the folder's contents, to compare before and after a refused command."""
    return snapshot
