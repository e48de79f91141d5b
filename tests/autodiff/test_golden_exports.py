"""Gradients of real torch.onnx exports against PyTorch's own gradients (golden files written by
benchmarks/golden_sequence_models.py; torch is not needed here): the dynamo exporter's opset-23
RMSNormalization + grouped-query causal Attention, a bidirectional LSTM and a GRU from both exporters,
and a scripted for-loop exported as a Loop. The gradient models run on onnxruntime."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest

from onnxgraph.autodiff import METADATA_KEY, build_gradient
from onnxgraph.runtime.sessions import create_session

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "sequence")


def _vjp(name: str, wrt: list[str]) -> tuple[dict[str, np.ndarray], np.lib.npyio.NpzFile, onnx.ModelProto]:
    """Run the VJP model of golden model ``name`` on onnxruntime with the stored inputs and upstream
    weights; return wrt name -> gradient, the golden arrays and the exported model."""
    model = onnx.load(os.path.join(GOLDEN, f"{name}.onnx"))
    golden = np.load(os.path.join(GOLDEN, f"{name}.npz"))
    for init in model.graph.initializer:  # parameters as inputs, as a training loop feeds them
        if init.name in wrt:
            model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    grad = build_gradient(model, vjp=True, wrt=wrt)
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    session = create_session(grad.to_proto().SerializeToString())
    feeds = {i.name: golden[i.name] for i in model.graph.input if i.name in golden.files}
    for init in model.graph.initializer:
        if init.name in wrt:
            feeds[init.name] = onnx.numpy_helper.to_array(init)
    feeds[mapping[f"{model.graph.output[0].name}@upstream"]] = golden["w"]
    names = [mapping[w] for w in wrt]
    return dict(zip(wrt, session.run(names, feeds))), golden, model


def _close(got, expected, what):
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=what)


def test_dynamo_opset23_attention_block():
    model = onnx.load(os.path.join(GOLDEN, "sdpa_opset23.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"Attention", "RMSNormalization"} <= ops
    # the exporter folds each Linear's transpose into an initializer: q, k, v, o in MatMul order
    weights = [n.input[1] for n in model.graph.node if n.op_type == "MatMul"]
    got, golden, _ = _vjp("sdpa_opset23", ["x", "norm.weight", *weights])
    _close(got["x"], golden["grad.x"], "x")
    _close(got["norm.weight"], golden["grad.norm.weight"], "norm.weight")
    for name, torch_name in zip(weights, ("q", "k", "v", "o")):
        _close(got[name], golden[f"grad.{torch_name}.weight"].T, torch_name)


def _onnx_gate_order(array: np.ndarray, order: list[int], axis: int) -> np.ndarray:
    """PyTorch's gate blocks reordered as ONNX stores them."""
    chunks = np.split(array, len(order), axis=axis)
    return np.concatenate([chunks[k] for k in order], axis=axis)


@pytest.mark.parametrize("name", ["rnn_torchscript", "rnn_dynamo"])
def test_lstm_gru_classifier(name):
    model = onnx.load(os.path.join(GOLDEN, f"{name}.onnx"))
    rnn = {n.op_type: n for n in model.graph.node if n.op_type in ("LSTM", "GRU")}
    lstm_b, lstm_w, lstm_r = rnn["LSTM"].input[3], rnn["LSTM"].input[1], rnn["LSTM"].input[2]
    gru_w, gru_r, gru_b = rnn["GRU"].input[1], rnn["GRU"].input[2], rnn["GRU"].input[3]
    wrt = ["x", "fc.weight", "fc.bias", lstm_w, lstm_r, lstm_b, gru_w, gru_r, gru_b]
    got, golden, _ = _vjp(name, wrt)
    assert rnn["LSTM"].attribute and not any(a.name == "layout" and a.i for a in rnn["LSTM"].attribute)
    for name in ("x", "fc.weight", "fc.bias"):
        _close(got[name], golden[f"grad.{name}"], name)
    iofc = [0, 3, 1, 2]  # PyTorch's LSTM gates are i, f, g, o; ONNX's i, o, f, c
    for d, suffix in enumerate(("", "_reverse")):
        for onnx_name, torch_name in ((lstm_w, "weight_ih_l0"), (lstm_r, "weight_hh_l0")):
            _close(got[onnx_name][d], _onnx_gate_order(golden[f"grad.lstm.{torch_name}{suffix}"], iofc, 0), torch_name)
        bias = np.concatenate([golden[f"grad.lstm.bias_ih_l0{suffix}"], golden[f"grad.lstm.bias_hh_l0{suffix}"]])
        _close(got[lstm_b][d], _onnx_gate_order(bias, [*iofc, *(k + 4 for k in iofc)], 0), "lstm bias")
    zrh = [1, 0, 2]  # PyTorch's GRU gates are r, z, n; ONNX's z, r, h
    _close(got[gru_w][0], _onnx_gate_order(golden["grad.gru.weight_ih_l0"], zrh, 0), "gru W")
    _close(got[gru_r][0], _onnx_gate_order(golden["grad.gru.weight_hh_l0"], zrh, 0), "gru R")
    bias = np.concatenate([golden["grad.gru.bias_ih_l0"], golden["grad.gru.bias_hh_l0"]])
    _close(got[gru_b][0], _onnx_gate_order(bias, [1, 0, 2, 4, 3, 5], 0), "gru B")


def test_torchscript_scripted_loop():
    model = onnx.load(os.path.join(GOLDEN, "loop_torchscript.onnx"))
    assert [n.op_type for n in model.graph.node].count("Loop") == 1
    got, golden, _ = _vjp("loop_torchscript", ["x", "w"])
    _close(got["x"], golden["grad.x"], "x")
    _close(got["w"], golden["grad.w"], "w")
