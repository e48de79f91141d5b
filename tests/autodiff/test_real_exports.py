"""Gradients of models exported by torch.onnx.export (TorchScript and dynamo exporters, dynamic batch
and audio-length axes) against PyTorch's autograd, stored as golden files by
benchmarks/real_exports_grad.py (PyTorch is not needed here).

Each golden pair is an exported ``NAME.onnx`` and ``NAME.npz`` holding, for two input sizes ``K``,
the input ``K/x``, the upstream gradient ``K/y_grad`` of output ``y`` and torch's gradient of every
parameter ``K/grad/<ONNX value>`` (laid out as the value holding it in the ONNX file).
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import onnx
import pytest

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.runtime.sessions import create_session

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
CASES = sorted(os.path.basename(p)[: -len(".onnx")] for p in glob.glob(os.path.join(GOLDEN, "*.onnx")))


def test_golden_files_are_there():
    assert len(CASES) == 10, CASES


@pytest.mark.parametrize("name", CASES)
def test_gradients_match_torch_autograd_at_two_sizes(name):
    model = onnx.load(os.path.join(GOLDEN, f"{name}.onnx"))
    with np.load(os.path.join(GOLDEN, f"{name}.npz")) as data:
        case = dict(data)
    params = sorted({key.split("/", 2)[2] for key in case if "/grad/" in key})
    grad = build_gradient(model, vjp=True, wrt=params)
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    session = create_session(grad.to_proto().SerializeToString())
    sizes = sorted({key.split("/")[0] for key in case})
    assert len(sizes) == 2 and case["0/x"].shape[0] != case["1/x"].shape[0]
    for k in sizes:
        feeds = {"x": case[f"{k}/x"], mapping["y@upstream"]: case[f"{k}/y_grad"]}
        for param, got in zip(params, session.run([mapping[p] for p in params], feeds)):
            expected = case[f"{k}/grad/{param}"]
            scale = max(1.0, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(
                got, expected, rtol=1e-4, atol=1e-5 * scale, err_msg=f"{name}: d/d{param} at size {k}"
            )
