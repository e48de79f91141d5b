"""Attention and RotaryEmbedding gradients beyond the op table: symbolic dims (run-time scale and
causal mask), a mask shorter than the keys and rotary caches broadcast over the batch (both
onnx.reference only) and the refused form naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients, spec_model
from onnx import TensorProto, helper
from op_specs import F, Spec

from onnxgraph.autodiff import GradientError, build_gradient

FLOAT = TensorProto.FLOAT


def _attention_model(inputs, outputs=("y",), opset=23, **attrs):
    names = [name for name, _ in inputs]
    node = helper.make_node("Attention", names, list(outputs), name="attn", **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, *spec) for n, spec in inputs if n],
        [helper.make_tensor_value_info(o, FLOAT, None) for o in outputs if o],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    return model


def test_symbolic_dims_use_run_time_scale_and_causal_mask():
    """3-D grouped-query attention whose batch, sequences and hidden sizes are all symbolic."""
    model = _attention_model(
        [("q", (FLOAT, ["B", "S", "Dq"])), ("k", (FLOAT, ["B", "T", "Dk"])), ("v", (FLOAT, ["B", "T", "Dv"]))],
        is_causal=1,
        q_num_heads=4,
        kv_num_heads=2,
    )
    rng = np.random.default_rng(0)
    feeds = {
        "q": rng.uniform(-1, 1, (2, 3, 12)),
        "k": rng.uniform(-1, 1, (2, 4, 6)),
        "v": rng.uniform(-1, 1, (2, 4, 4)),
    }
    check_gradients(model, feeds, ["q", "k", "v"])


def test_mask_shorter_than_the_keys_is_padded():
    """The op pads such a mask with -inf; onnxruntime's kernel refuses it, so onnx.reference only."""
    spec = Spec("Attention", (F((2, 2, 3, 4)), F((2, 2, 5, 4)), F((2, 2, 5, 3)), F((2, 1, 3, 3))), opset=23, id="m")
    model, feeds, wrt = spec_model(spec)
    check_gradients(model, feeds, wrt, compare_onnxruntime=False)


def test_unknown_head_counts_are_refused_naming_the_node():
    model = _attention_model(
        [("q", (FLOAT, [1, "H", 3, 4])), ("k", (FLOAT, [1, "G", 3, 4])), ("v", (FLOAT, [1, "G", 3, 4]))]
    )
    with pytest.raises(GradientError, match=r"Attention \(node 'attn'\) needs static head counts"):
        build_gradient(model, vjp=True, wrt=["q"])


def test_rotary_caches_broadcast_over_the_batch():
    """Caches of batch 1 without position_ids (onnx.reference broadcasts them, onnxruntime refuses):
    their gradients are summed over the batch."""
    spec = Spec("RotaryEmbedding", (F((2, 2, 3, 4)), F((1, 3, 2)), F((1, 3, 2))), opset=23, id="rope")
    model, feeds, wrt = spec_model(spec)
    check_gradients(model, feeds, wrt, compare_onnxruntime=False)
