"""``optimize`` leaves no more nodes than the best of onnxsim, onnxslim and onnxruntime's basic optimizer.

The exporter-style builders of models/build.py stand in for torch exports of BERT, GPT-2, ViT and a
ResNet. Their anchor counts were measured once by ``benchmarks/node_counts.py --builders ...
--write-anchors`` (anchor_counts.json beside this file: each tool's count and ``best``, the smallest
among results made of standard ONNX ops only), so these tests need none of those tools.
"""

from __future__ import annotations

import json
import os

import model_builders as BUILD
import pytest

import onnxgraph
from onnxgraph.optimizers import optimize
from onnxgraph.runtime.compare import compare_outputs
from onnxgraph.runtime.inputs import random_inputs, specs_of
from onnxgraph.runtime.sessions import run_model

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "anchor_counts.json")) as _f:
    ANCHORS: dict[str, dict] = json.load(_f)


@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_optimize_is_at_most_the_best_anchor_and_matches_onnxruntime(name):
    original = getattr(BUILD, name)()
    optimized, report = optimize(original)
    assert report.ok and not report.rollbacks, report.rollbacks
    nodes = sum(1 for _ in optimized.all_nodes())
    assert nodes <= ANCHORS[name]["best"], f"{name}: {nodes} nodes, best anchor {ANCHORS[name]['best']}"
    # the optimized model against onnxruntime on the original, at sizes other than verification's
    specs = specs_of(onnxgraph.from_proto(original))
    feeds = random_inputs(specs, seed=7, dynamic_dim=3, int_ranges={"input_ids": (0, 100), "attention_mask": (0, 2)})
    comparisons = compare_outputs(run_model(original, feeds), run_model(optimized.to_proto(), feeds))
    assert comparisons and all(c.passed for c in comparisons), comparisons
