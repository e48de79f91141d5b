"""The committed sample models are exactly what models/build.py produces, and they run."""

from __future__ import annotations

import os

import model_builders
import onnx
import pytest

import onnxgraph
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import create_session

MODELS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")


@pytest.mark.parametrize("name", sorted(model_builders.BUNDLED))
def test_committed_model_matches_its_builder_and_runs(name):
    path = os.path.join(MODELS, name)
    built = model_builders.BUNDLED[name]()
    assert onnx.load(path) == built, f"models/{name} is stale: run python models/build.py"
    onnx.checker.check_model(built, full_check=True)
    outputs = create_session(path).run(None, random_inputs(specs_of(onnxgraph.load(path)), seed=0))
    assert all(o.size for o in outputs)
