"""``isolated.run_bounded``'s load-only mode, which region verification uses to show that a result it
did not run whole still loads on onnxruntime."""

from __future__ import annotations

import onnx
import pytest
from onnx import helper

import onnxgraph
from onnxgraph.errors import RunError
from onnxgraph.runtime.isolated import run_bounded


def _model(op_type: str = "Relu", domain: str = "") -> onnxgraph.Model:
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x"], ["y"], domain=domain)],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    return onnxgraph.from_proto(helper.make_model(graph, opset_imports=opsets, ir_version=8))


def test_load_only_creates_the_session_and_runs_nothing():
    model = _model()
    assert run_bounded(model, {}, load_only=True) == {}
    with pytest.raises(RunError):  # a run without its input fails: the load-only call did not run
        run_bounded(model, {})


def test_load_only_reports_a_model_onnxruntime_refuses_to_load():
    with pytest.raises(RunError):
        run_bounded(_model("Nothing", domain="no.such.domain"), {}, load_only=True)
