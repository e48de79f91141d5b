"""Evaluating a list of constant nodes in one go: onnxruntime first, onnx.reference as fallback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from onnxgraph import types
from onnxgraph.errors import EvaluationError, one_line
from onnxgraph.node import Node
from onnxgraph.serde.exporter import export_node


def subgraph_model(
    nodes: Sequence[Node], feeds: Mapping[str, np.ndarray], opsets: Mapping[str, int], ir_version: int
) -> onnx.ModelProto:
    """A model that computes every output of ``nodes`` from graph inputs named as ``feeds``."""
    inputs = [
        helper.make_tensor_value_info(name, types.elem_type_of(array.dtype), array.shape)
        for name, array in feeds.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(v.name) for n in nodes for v in n.outputs if v.name]
    graph = helper.make_graph([export_node(n) for n in nodes], "constant_subgraph", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])
    model.ir_version = ir_version
    return model


def run_onnxruntime(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` once on onnxruntime CPU with graph optimizations off (one session)."""
    from onnxgraph.runtime.sessions import create_session

    try:
        session = create_session(model, optimization="disable")
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, dict(feeds))))
    except Exception as exc:  # onnxruntime raises its own exception types for unsupported ops
        raise EvaluationError(one_line(exc)) from exc


def run_reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``model`` with onnx's reference evaluator (slow, but it knows every standard op)."""
    from onnx.reference import ReferenceEvaluator

    try:
        evaluator = ReferenceEvaluator(model)
        names = [o.name for o in model.graph.output]
        return dict(zip(names, evaluator.run(names, dict(feeds))))
    except Exception as exc:  # the reference evaluator raises whatever its op kernels raise
        raise EvaluationError(one_line(exc)) from exc
