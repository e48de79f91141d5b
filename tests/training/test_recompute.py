"""recompute: the backward pass reads recomputed activations, and the numbers do not change."""

from __future__ import annotations

import model_builders as models
import numpy as np
import pytest

from onnxgraph.training import TrainingError, build_training
from onnxgraph.training.recompute import BOUNDARY_OPS
from onnxgraph.training.trainer import Trainer

FROZEN = ["causal_mask", "attn_scale"]


@pytest.fixture(scope="module")
def block():
    model = models.transformer_block(vocab=50, seq=8, dim=16, heads=2, ff=32, layers=2)
    ids = np.random.default_rng(0).integers(0, 50, (32, 9))
    return model, {"ids": ids[:, :-1], "target": ids[:, 1:]}


def _forward_nodes(model, layout):
    graph = model.graph
    by_name = {v.name: v for v in graph.outputs}
    stack = [by_name[n].producer() for n in [layout.loss, *layout.outputs]]
    seen = set()
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(x.producer() for x in node.inputs if x is not None)
    return seen


def test_auto_keeps_only_block_boundaries_for_the_backward_pass(block):
    model, data = block
    artifacts = build_training(model, loss_fn="cross_entropy", frozen=FROZEN, recompute="auto")
    forward = _forward_nodes(artifacts.train_step, artifacts.layout)
    kept = {n.inputs[0] for n in forward if n.op_type in BOUNDARY_OPS}
    read_by_backward = {
        x
        for n in artifacts.train_step.graph
        if n not in forward
        for x in n.inputs
        if x is not None and x.producer() in forward and x.producer().op_type != "Constant"
    }
    assert read_by_backward and read_by_backward <= kept
    assert any(n.name.endswith("_recompute") for n in artifacts.train_step.graph)


def test_recomputed_training_gives_the_same_losses(block):
    model, data = block
    runs = {}
    for choice in ("none", "auto"):
        artifacts = build_training(model, loss_fn="cross_entropy", frozen=FROZEN, recompute=choice)
        runs[choice] = Trainer(artifacts, data, batch_size=8, threads=1).fit(steps=6)
    np.testing.assert_allclose(runs["auto"], runs["none"], rtol=1e-6)


def test_an_explicit_list_recomputes_those_values(block):
    model, data = block
    artifacts = build_training(model, loss_fn="cross_entropy", frozen=FROZEN, recompute=["l0.attn"])
    graph = artifacts.train_step.graph
    original = next(v for n in graph for v in n.outputs if v.name == "l0.attn")
    assert all(n in _forward_nodes(artifacts.train_step, artifacts.layout) for n in original.consumers())
    assert sum(n.op_type == "Softmax" for n in graph) == 3  # two layers' softmax, one recomputed
    with pytest.raises(TrainingError, match="'nope' is not an activation|nope is not an activation"):
        build_training(model, loss_fn="cross_entropy", frozen=FROZEN, recompute=["nope"])
