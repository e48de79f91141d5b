"""Helpers for the convert tests: models from ONNX text, runs on onnxruntime and onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx.reference import ReferenceEvaluator

import onnxgraph
from onnxgraph.runtime.sessions import create_session


def model_from_text(text: str) -> onnxgraph.Model:
    return onnxgraph.load(onnx.parser.parse_model(text))


def run_reference(model: onnxgraph.Model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ReferenceEvaluator(model.to_proto()).run(None, feeds)


def run_ort(model: onnxgraph.Model | onnx.ModelProto | str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    source = model.to_proto() if isinstance(model, onnxgraph.Model) else model
    return create_session(source).run(None, feeds)


def cast_round_trips(model: onnxgraph.Model) -> list[str]:
    """Casts that undo a Cast: Cast(Cast(x, to=A), to=type of x) between float types."""
    found = []
    for node in model.all_nodes():
        if node.op_type != "Cast":
            continue
        producer = node.inputs[0].producer()
        if producer is not None and producer.op_type == "Cast":
            source = producer.inputs[0]
            if source.elem_type == node.attr("to"):
                found.append(node.outputs[0].name)
    return found


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(name="model_from_text")
def _model_from_text_fixture():
    return model_from_text


@pytest.fixture(name="run_reference")
def _run_reference_fixture():
    return run_reference


@pytest.fixture(name="run_ort")
def _run_ort_fixture():
    return run_ort


@pytest.fixture(name="cast_round_trips")
def _cast_round_trips_fixture():
    return cast_round_trips
