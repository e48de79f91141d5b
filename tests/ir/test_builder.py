"""The op builder: one output value per call, a tuple whenever ``_outputs`` is given (even 1)."""

from __future__ import annotations

import numpy as np
import onnx

from onnxgraph import Value, types
from onnxgraph.builder import OpBuilder
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.runtime.sessions import create_session


def test_single_and_multi_output_calls():
    graph = Graph("g", inputs=[Value("x", types.tensor_type(onnx.TensorProto.FLOAT, (6,)))])
    op = OpBuilder(graph)
    (x,) = graph.inputs
    doubled = op.Add(x, x)
    assert isinstance(doubled, Value)
    halves = op.Split(doubled, op.const(np.array([3, 3], np.int64)), _outputs=2)
    whole = op.Split(doubled, num_outputs=1, _outputs=1)  # a computed count of 1 still gives a tuple
    assert isinstance(halves, tuple) and len(halves) == 2 and isinstance(whole, tuple) and len(whole) == 1
    graph.outputs = [*halves, whole[0]]
    proto = Model(graph, opset_imports={"": 18}, ir_version=9).to_proto()
    a, b, c = create_session(proto).run(None, {"x": np.arange(6, dtype=np.float32)})
    np.testing.assert_array_equal(a, [0, 2, 4])
    np.testing.assert_array_equal(b, [6, 8, 10])
    np.testing.assert_array_equal(c, np.arange(6) * 2)
