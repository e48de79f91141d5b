"""Node.input: a required input as a Value, or a MalformedGraphError naming the node."""

from __future__ import annotations

import onnx
import pytest

from onnxgraph import Value, types
from onnxgraph.errors import MalformedGraphError
from onnxgraph.node import Node


def _x() -> Value:
    return Value("x", types.tensor_type(onnx.TensorProto.FLOAT, (2,)))


def test_returns_the_value_at_the_index():
    x, s = _x(), _x()
    node = Node("", "LayerNormalization", [x, s])
    assert node.input(0) is x and node.input(1) is s and node.input(-1) is s


@pytest.mark.parametrize("inputs", [[], [None]], ids=["too-few", "omitted"])
def test_a_missing_required_input_is_a_malformed_graph(inputs):
    node = Node("", "Relu", inputs, name="r")
    with pytest.raises(MalformedGraphError, match=r"Relu node 'r' has no input 0, which it requires"):
        node.input(0)
