"""Fixtures for pass tests: models from onnx text, running them, checking outputs and structure."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnx.parser
import pytest

import onnxgraph
from onnxgraph.runtime.compare import compare_outputs
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import create_session


class Kit:
    """Helpers shared by the pass tests."""

    @staticmethod
    def parse(text: str) -> onnxgraph.Model:
        """A model from the onnx text syntax (a header with IR version and opsets is added)."""
        if not text.lstrip().startswith("<"):
            text = '<ir_version: 8, opset_import: ["" : 17]>\n' + text
        return onnxgraph.from_proto(onnx.parser.parse_model(text))

    @staticmethod
    def ops(model: onnxgraph.Model) -> Counter[str]:
        """Op type counts over every graph and function."""
        return Counter(n.op_type for n in model.all_nodes())

    @staticmethod
    def run(model: onnxgraph.Model | onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        proto = model if isinstance(model, onnx.ModelProto) else model.to_proto()
        session = create_session(proto, optimization="disable")
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))

    @classmethod
    def assert_same(cls, before: onnx.ModelProto, after: onnxgraph.Model, shapes=None) -> None:
        """``before`` and ``after`` give the same outputs (dtype-aware tolerance) on seeded inputs."""
        feeds = random_inputs(specs_of(after), shapes=shapes, seed=1)
        comparisons = compare_outputs(cls.run(before, feeds), cls.run(after, feeds))
        assert comparisons and all(c.passed for c in comparisons), comparisons

    @classmethod
    def apply(cls, pass_, model: onnxgraph.Model):
        """Run one pass on ``model``, check the result against the original, return the stats."""
        before = model.to_proto()
        stats = pass_(model).stats
        onnx.checker.check_model(model.to_proto(), full_check=False)
        cls.assert_same(before, model)
        return stats


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
