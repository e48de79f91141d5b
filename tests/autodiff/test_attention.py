"""Attention and RotaryEmbedding gradients beyond the op table: symbolic dims (run-time scale and
causal mask), the llama-style grad model's structure, and the refused forms naming the node."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import check_gradients
from onnx import TensorProto, helper

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


@pytest.mark.parametrize(
    ("inputs", "outputs", "opset", "attrs", "message"),
    [
        (
            [("q", (FLOAT, [1, 2, 3, 4])), ("k", (FLOAT, [1, 2, 3, 4])), ("v", (FLOAT, [1, 2, 3, 4])), ("", None),
             ("", None), ("", None), ("lens", (TensorProto.INT64, [1]))],
            ("y",), 24, {}, "nonpad_kv_seqlen",
        ),
        (
            [("q", (FLOAT, [1, 2, 3, 4])), ("k", (FLOAT, [1, 2, 3, 4])), ("v", (FLOAT, [1, 2, 3, 4]))],
            ("y", "", "", "scores"), 23, {}, "output 3",
        ),
        (
            [("q", (FLOAT, [1, 2, 3, 4])), ("k", (FLOAT, [1, 2, 5, 4])), ("v", (FLOAT, [1, 2, 5, 4])),
             ("mask", (FLOAT, [3, 4]))],
            ("y",), 23, {}, "shorter than the key sequence",
        ),
        (
            [("q", (FLOAT, [1, "H", 3, 4])), ("k", (FLOAT, [1, "G", 3, 4])), ("v", (FLOAT, [1, "G", 3, 4]))],
            ("y",), 23, {}, "static head counts",
        ),
    ],
    ids=["nonpad-kv-seqlen", "qk-matmul-output", "short-mask", "unknown-heads"],
)  # fmt: skip
def test_unsupported_forms_are_refused_naming_the_node(inputs, outputs, opset, attrs, message):
    model = _attention_model(inputs, outputs, opset, **attrs)
    with pytest.raises(GradientError, match=rf"Attention.*'attn'.*{message}|{message}.*'attn'"):
        build_gradient(model, vjp=True, wrt=["q"])
