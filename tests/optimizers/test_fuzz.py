"""Seeded random models through ``optimize(verify=False)``: no safety net, results must not change.

The models (see ``fuzz_models.py``) mix the ops the passes rewrite; each optimized model must keep
its inputs' and outputs' names and types (symbolic dims included) and compute the same outputs as
the original on onnxruntime at several sizes of the symbolic dims. A bigger sweep by hand::

    FUZZ_SEEDS=1000 pytest -q -x tests/optimizers/test_fuzz.py
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.optimizers import optimize
from onnxgraph.runtime.sessions import create_session

from .fuzz_models import random_model

SIZES = ({"N": 1, "H": 1}, {"N": 2, "H": 3}, {"N": 3, "H": 2})
RTOL, ATOL = 1e-4, 1e-5


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = create_session(model, optimization="disable")
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def _interface(values) -> list[tuple[str, bytes]]:
    return [(v.name, v.type.SerializeToString(deterministic=True)) for v in values]


def check_seed(seed: int) -> None:
    """Optimize the random model of ``seed`` and check it against the original."""
    original = random_model(seed)
    optimized, _ = optimize(onnxgraph.from_proto(original), verify=False)
    proto = optimized.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert _interface(proto.graph.input) == _interface(original.graph.input)
    assert _interface(proto.graph.output) == _interface(original.graph.output)
    rng = np.random.default_rng(seed)
    for sizes in SIZES:
        x = rng.standard_normal((sizes["N"], 3, sizes["H"], 4)).astype(np.float32)
        expected, actual = _run(original, {"X": x}), _run(proto, {"X": x})
        assert list(actual) == list(expected)
        for name, want in expected.items():
            got = actual[name]
            assert got.dtype == want.dtype and got.shape == want.shape, (name, sizes)
            # fusions reorder float sums: absolute error scales with the output's magnitude
            scale = max(1.0, float(np.max(np.abs(want), initial=0, where=np.isfinite(want))))
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=f"{name} at {sizes}")


@pytest.mark.parametrize("seed", range(int(os.environ.get("FUZZ_SEEDS", "100"))))
def test_optimize_keeps_results_of_random_model(seed):
    check_seed(seed)
