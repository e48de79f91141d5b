"""LSTM and GRU gradients beyond the op table: batch-first layout (onnx.reference only, onnxruntime
has no layout 1 kernels), an omitted Y output, symbolic batch and time, the refusals, and a sequence
classifier checked against finite differences and trained on onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from gradcheck import check_gradients, spec_model
from onnx import TensorProto, helper
from op_specs import C, F, Spec
from test_models import Trainer, _float_params, _train, initializers_as_inputs, models

from onnxgraph.autodiff import GradientError, build_gradient

H2 = {"hidden_size": 2}
LAYOUT1 = [
    Spec(
        "LSTM",
        (F((2, 3, 3)), F((2, 8, 3)), F((2, 8, 2)), F((2, 16)), C(None), F((2, 2, 2)), F((2, 2, 2))),
        {**H2, "direction": "bidirectional", "layout": 1},
        outputs=3,
        opset=14,
        id="LSTM-bidirectional-layout1",
    ),
    Spec(
        "GRU",
        (F((2, 3, 3)), F((2, 6, 3)), F((2, 6, 2)), F((2, 12)), C(None), F((2, 2, 2))),
        {**H2, "direction": "bidirectional", "layout": 1, "linear_before_reset": 1},
        outputs=2,
        opset=14,
        id="GRU-bidirectional-layout1",
    ),
]


@pytest.mark.parametrize("spec", LAYOUT1, ids=[s.name for s in LAYOUT1])
def test_batch_first_layout(spec):
    model, feeds, wrt = spec_model(spec)
    check_gradients(model, feeds, wrt, compare_onnxruntime=False)


def _rnn_model(op, outputs, gates, *, extra_inputs=(), dims=("T", "B"), **attrs):
    """One LSTM/GRU node on symbolic dims; ``outputs`` names its outputs ("" omits one)."""
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [*dims, 3]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [1, gates * 2, 3]),
        helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, gates * 2, 2]),
    ]
    names = ["x", "w", "r", *extra_inputs]
    node = helper.make_node(op, names, list(outputs), name=f"{op.lower()}_node", hidden_size=2, **attrs)
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs if o]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize(("op", "gates", "outputs"), [("LSTM", 4, ["", "", "yc"]), ("GRU", 3, ["", "yh"])])
@pytest.mark.parametrize("steps", [1, 4])
def test_symbolic_time_and_omitted_y(op, gates, outputs, steps):
    """Y is what the backward pass reads: the rule adds it when the model omits it."""
    model = _rnn_model(op, outputs, gates, direction="bidirectional" if op == "GRU" else "forward")
    if op == "GRU":
        for info in model.graph.input[1:]:
            info.type.tensor_type.shape.dim[0].dim_value = 2
    rng = np.random.default_rng(steps)
    directions = 2 if op == "GRU" else 1
    feeds = {
        "x": rng.uniform(-1, 1, (steps, 2, 3)),
        "w": rng.uniform(-1, 1, (directions, gates * 2, 3)),
        "r": rng.uniform(-1, 1, (directions, gates * 2, 2)),
    }
    check_gradients(model, feeds, ["x", "w", "r"])


@pytest.mark.parametrize(
    ("extra", "attrs", "message"),
    [
        (["", "lens"], {}, "sequence_lens"),
        (["", "", "", "", "p"], {}, "peepholes"),
        ([], {"activations": ["Sigmoid", "Relu", "Tanh"]}, "activations"),
        ([], {"clip": 3.0}, "clip"),
        ([], {"input_forget": 1}, "input_forget"),
    ],
)
def test_unsupported_forms_are_refused_naming_the_node(extra, attrs, message):
    model = _rnn_model("LSTM", ["y"], 4, extra_inputs=extra, **attrs)
    for name in extra:
        if name == "lens":
            model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["B"]))
        elif name:
            model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 6]))
    with pytest.raises(GradientError, match=rf"node 'lstm_node'.*{message}"):
        build_gradient(model, vjp=True, wrt=["w"])


def test_rnn_classifier_gradient_matches_finite_differences():
    model = models.rnn_classifier()
    params = _float_params(model)
    model, values = initializers_as_inputs(model, params)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 5, 3)), **{k: v.astype(np.float64) for k, v in values.items()}}
    check_gradients(model, feeds, [*params, "x"], coords_per_input=8)


def test_rnn_classifier_trains_on_onnxruntime():
    """Which of three features has the largest sum over time: the recurrent model must learn it."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((32, 6, 3)).astype(np.float32)
    labels = np.argmax(x.sum(axis=1), axis=1).astype(np.int64)
    model = models.rnn_classifier(hidden=8)
    trainer = Trainer(model, _float_params(model), "cross_entropy", "logits")
    first, last = _train(trainer, {"x": x, "target": labels}, lr=0.5)
    assert last < first / 10, (first, last)
    proto = build_gradient(model, loss_fn="cross_entropy", output="logits").to_proto()
    assert {n.op_type for n in proto.graph.node} >= {"Scan", "LSTM", "GRU"}
    assert all(n.domain in ("", "ai.onnx") for n in proto.graph.node)
    onnx.checker.check_model(proto)
