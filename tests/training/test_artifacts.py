"""build_training: the train step's layout, standard ops only, and its update rules against
PyTorch's formulas written out in numpy, driven directly on onnxruntime as any user would."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from training_models import loss_model, scale_model

from onnxgraph.runtime.sessions import create_session
from onnxgraph.training import SGD, Adam, AdamW, TrainingError, build_training
from onnxgraph.training.artifacts import Layout

MODELS = os.path.join(os.path.dirname(__file__), "..", "..", "models")
X = np.array([[1.0, 2.0, -1.0, 0.5], [0.5, -3.0, 2.0, 1.0]], dtype=np.float32)


def _drive(artifacts, feeds: dict, steps: int, lr: float) -> tuple[list[float], dict[str, np.ndarray]]:
    """Run the train step ``steps`` times from the initial state, feeding each .new output back."""
    layout = artifacts.layout
    session = create_session(artifacts.train_step.to_proto())
    carried = dict(artifacts.initial)
    losses = []
    for step in range(1, steps + 1):
        inputs = {**feeds, **carried, layout.step: np.array(step, np.int64), layout.lr: np.array(lr, np.float32)}
        names = [layout.loss, *(Layout.new_name(n) for n in layout.carried)]
        loss, *new = session.run(names, inputs)
        losses.append(float(loss))
        carried = dict(zip(layout.carried, new))
    return losses, carried


def _reference(kind: str, steps: int, lr: float, **hyper) -> np.ndarray:
    """torch.optim's update of w for the scale model with the sum loss (gradient: column sums of X)."""
    w = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float64)
    g0 = X.sum(0).astype(np.float64)
    buf, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t in range(1, steps + 1):
        g = g0.copy()
        if kind == "sgd":
            g = g + hyper.get("weight_decay", 0) * w
            buf = hyper["momentum"] * buf + g if t > 1 else g
            w = w - lr * (g + hyper["momentum"] * buf if hyper.get("nesterov") else buf)
            continue
        b1, b2 = hyper["betas"]
        if kind == "adamw":
            w = w * (1 - lr * hyper["weight_decay"])
        else:
            g = g + hyper["weight_decay"] * w
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2**t) + hyper["eps"]
        w = w - lr / (1 - b1**t) * m / denom
    return w


@pytest.mark.parametrize(
    ("optimizer", "kind", "hyper"),
    [
        (SGD(momentum=0.9), "sgd", {"momentum": 0.9}),
        (
            SGD(momentum=0.8, nesterov=True, weight_decay=0.1),
            "sgd",
            {"momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
        ),
        (
            Adam(betas=(0.8, 0.9), eps=1e-6, weight_decay=0.05),
            "adam",
            {"betas": (0.8, 0.9), "eps": 1e-6, "weight_decay": 0.05},
        ),
        (AdamW(betas=(0.9, 0.99), weight_decay=0.1), "adamw", {"betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1}),
    ],
)
def test_update_rules_follow_pytorch(optimizer, kind, hyper):
    artifacts = build_training(scale_model(), loss_fn="sum", optimizer=optimizer)
    _, carried = _drive(artifacts, {"x": X}, steps=4, lr=0.05)
    np.testing.assert_allclose(carried["w"], _reference(kind, 4, 0.05, **hyper), rtol=1e-5, atol=1e-6)


def test_plain_sgd_keeps_no_state():
    artifacts = build_training(scale_model(), loss_fn="sum", optimizer=SGD())
    assert artifacts.layout.optimizer_state == []
    _, carried = _drive(artifacts, {"x": X}, steps=2, lr=0.1)
    np.testing.assert_allclose(carried["w"], [0.5, -1.0, 2.0, 0.25] - 0.2 * X.sum(0), rtol=1e-6)


def test_clip_grad_norm_scales_by_the_global_norm():
    artifacts = build_training(scale_model(), loss_fn="sum", optimizer=SGD(), clip_grad_norm=0.5)
    _, carried = _drive(artifacts, {"x": X}, steps=1, lr=1.0)
    g = X.sum(0)
    expected = np.array([0.5, -1.0, 2.0, 0.25]) - g * min(1.0, 0.5 / (np.linalg.norm(g) + 1e-6))
    np.testing.assert_allclose(carried["w"], expected, rtol=1e-6)


def test_model_output_as_loss():
    artifacts = build_training(loss_model(), loss="my_loss", optimizer=SGD())
    losses, carried = _drive(artifacts, {"x": X}, steps=1, lr=0.01)
    w = np.array([0.5, -1.0, 2.0, 0.25])
    assert losses[0] == pytest.approx(float(((X * w) ** 2).sum()), rel=1e-6)
    np.testing.assert_allclose(carried["w"], w - 0.01 * (2 * X * X * w).sum(0), rtol=1e-6)
    assert artifacts.layout.target is None


def test_train_step_has_standard_ops_and_the_documented_layout():
    artifacts = build_training(os.path.join(MODELS, "cnn.onnx"), loss_fn="cross_entropy", optimizer=AdamW())
    proto = artifacts.train_step.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert {n.domain for n in proto.graph.node} == {""}
    assert [o.domain for o in proto.opset_import] == [""]
    assert not proto.functions
    layout = artifacts.layout
    assert layout.buffers == ["bn1.running_mean", "bn1.running_var"]
    assert "bn1.scale.exp_avg_sq" in layout.optimizer_state
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    assert set(inputs) == {"x", "target", "step", "lr", *layout.carried}
    assert set(outputs) == {"loss", "logits", *(Layout.new_name(n) for n in layout.carried)}
    bn = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert [a.i for n in bn for a in n.attribute if a.name == "training_mode"] == [1]
    eval_bn = [n for n in artifacts.eval.to_proto().graph.node if n.op_type == "BatchNormalization"]
    assert all(a.name != "training_mode" or a.i == 0 for n in eval_bn for a in n.attribute)


def test_frozen_parameters_get_no_gradient_and_no_state(mlp_data):
    artifacts = build_training(os.path.join(MODELS, "mlp.onnx"), loss_fn="cross_entropy", frozen=["fc0.*"])
    layout = artifacts.layout
    assert layout.frozen == ["fc0.weight", "fc0.bias"]
    assert layout.parameters == ["fc1.weight", "fc1.bias"]
    assert not any(s.startswith("fc0.") for s in layout.optimizer_state)
    graph = artifacts.train_step.graph
    assert "fc0.weight" not in {v.name for v in graph.inputs}
    assert not any("fc0.weight" in v.name and v.name.endswith("_grad") for v in graph.outputs)
    _, carried = _drive(artifacts, {"x": mlp_data["x"][:8], "target": mlp_data["target"][:8]}, steps=1, lr=0.1)
    assert not np.array_equal(carried["fc1.weight"], artifacts.initial["fc1.weight"])


def test_ignore_index_drops_samples_from_the_loss(mlp_data):
    artifacts = build_training(os.path.join(MODELS, "mlp.onnx"), loss_fn="cross_entropy", ignore_index=-100)
    x, target = mlp_data["x"][:8], mlp_data["target"][:8].copy()
    target[::2] = -100
    feeds = {"x": x, "target": target, **{n: artifacts.initial[n] for n in artifacts.layout.parameters}}
    loss, logits = create_session(artifacts.eval.to_proto()).run(["loss", "logits"], feeds)
    logits = logits.astype(np.float64)
    log_probs = (
        logits
        - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True))
        - logits.max(1, keepdims=True)
    )
    kept = target != -100
    assert float(loss) == pytest.approx(-log_probs[kept, target[kept]].mean(), rel=1e-5)
    step_losses, _ = _drive(artifacts, {"x": x, "target": target}, steps=1, lr=0.0)
    assert step_losses[0] == pytest.approx(float(loss), rel=1e-5)


def test_save_writes_models_layout_and_initial_state(tmp_path):
    from safetensors.numpy import load_file

    artifacts = build_training(scale_model(), loss_fn="mse", target="y_true", optimizer=AdamW())
    written = artifacts.save(tmp_path)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(
        ["train_step.onnx", "eval.onnx", "inference.onnx", "training.json", "initial_state.safetensors"]
    )
    layout = json.loads((tmp_path / "training.json").read_text())
    assert layout["target"] == "y_true" and layout["parameters"] == ["w"]
    assert layout["optimizer_state"] == ["w.exp_avg", "w.exp_avg_sq"]
    state = load_file(tmp_path / "initial_state.safetensors")
    np.testing.assert_array_equal(state["w"], [0.5, -1.0, 2.0, 0.25])
    np.testing.assert_array_equal(state["w.exp_avg"], np.zeros(4, np.float32))
    inference = onnx.load(tmp_path / "inference.onnx")
    assert [i.name for i in inference.graph.input] == ["x"] and [o.name for o in inference.graph.output] == ["y"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss_fn": "mse", "loss": "y"}, "exactly one of loss_fn or loss"),
        ({"loss_fn": "hinge"}, "unknown loss function 'hinge'"),
        ({"loss_fn": "mse", "frozen": ["nothing*"]}, r"frozen 'nothing\*' matches no"),
        ({"loss_fn": "mse", "frozen": ["w"]}, "no parameter is left to train"),
        ({"loss_fn": "mse", "ignore_index": 1}, "ignore_index goes with the cross_entropy loss only"),
        ({"loss_fn": "mse", "clip_grad_norm": 0.0}, "clip_grad_norm must be positive"),
        ({"loss_fn": "mse", "target": "x"}, "already has a value named 'x'"),
    ],
)
def test_bad_options_raise_one_clear_error(kwargs, message):
    with pytest.raises(TrainingError, match=message):
        build_training(scale_model(), **kwargs)


def test_an_output_of_unknown_element_type_is_refused_clearly():
    # a custom op's output: shape inference cannot type it, and typing the loss raised a bare TypeError
    from onnx import helper

    model = scale_model()
    model.graph.node.append(helper.make_node("Blur", ["y"], ["z"], domain="example.custom"))
    del model.graph.output[:]
    model.graph.output.append(onnx.ValueInfoProto(name="z"))
    model.opset_import.append(helper.make_opsetid("example.custom", 1))
    with pytest.raises(TrainingError, match="element type of 'z' is unknown"):
        build_training(model, loss_fn="sum")
