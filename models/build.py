"""Builders of the small sample models bundled in models/.

Run ``python models/build.py`` to regenerate the ``.onnx`` files; a test checks that the committed
files are what these builders produce.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.parser
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
OPSET = 17


def _init(rng: np.random.Generator, name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def mlp(sizes: tuple[int, ...] = (784, 256, 10), seed: int = 0) -> onnx.ModelProto:
    """A multi-layer perceptron ``x[batch, in] -> logits[batch, out]`` with Gemm and Relu layers."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    current = "x"
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w, b = f"fc{layer}.weight", f"fc{layer}.bias"
        inits += [_init(rng, w, (n_out, n_in), (2.0 / n_in) ** 0.5), _init(rng, b, (n_out,), 0.01)]
        out = "logits" if layer == len(sizes) - 2 else f"fc{layer}"
        nodes.append(helper.make_node("Gemm", [current, w, b], [out], name=f"fc{layer}", transB=1))
        if out != "logits":
            nodes.append(helper.make_node("Relu", [out], [f"relu{layer}"], name=f"relu{layer}"))
            current = f"relu{layer}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", sizes[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnxgraph")
    model.ir_version = 8
    return model


class _Exporter:
    """Emits nodes the way torch.onnx does: Constant nodes, Identity clutter, shape chains."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, op: str) -> str:
        self.count += 1
        return f"/{op}_{self.count}"

    def op(self, op: str, inputs: list[str], **attrs) -> str:
        out = self.name(op) + "_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.name(op), **attrs))
        return out

    def const(self, array: np.ndarray) -> str:
        """A Constant node, as the exporter writes every literal."""
        out = self.name("Constant") + "_output_0"
        tensor = numpy_helper.from_array(np.asarray(array))
        self.nodes.append(helper.make_node("Constant", [], [out], name=self.name("Constant"), value=tensor))
        return out

    def weight(self, name: str, shape: tuple[int, ...], scale: float) -> str:
        self.inits.append(_init(self.rng, name, shape, scale))
        return self.op("Identity", [name])  # shared-parameter Identity clutter

    def reduce_mean(self, x: str, axes: list[int], opset: int) -> str:
        """``ReduceMean`` keeping dims, with ``axes`` an attribute (opset < 18) or an input."""
        if opset < 18:
            return self.op("ReduceMean", [x], axes=axes, keepdims=1)
        return self.op("ReduceMean", [x, self.const(np.array(axes, np.int64))], keepdims=1)

    def dim(self, x: str, axis: int) -> str:
        """``Unsqueeze(Gather(Shape(x), axis), 0)``: one runtime dimension of ``x`` as a 1-D tensor."""
        gathered = self.op("Gather", [self.op("Shape", [x]), self.const(np.array(axis, np.int64))], axis=0)
        return self.op("Unsqueeze", [gathered, self.const(np.array([0], np.int64))])

    def linear(self, x: str, prefix: str, n_in: int, n_out: int) -> str:
        w = self.weight(f"{prefix}.weight", (n_in, n_out), (1.0 / n_in) ** 0.5)
        b = self.weight(f"{prefix}.bias", (n_out,), 0.02)
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def layer_norm(self, x: str, prefix: str, hidden: int) -> str:
        self.inits.append(numpy_helper.from_array(np.ones(hidden, np.float32), f"{prefix}.weight"))
        self.inits.append(numpy_helper.from_array(np.zeros(hidden, np.float32), f"{prefix}.bias"))
        return self.op("LayerNormalization", [x, f"{prefix}.weight", f"{prefix}.bias"], axis=-1, epsilon=1e-12)

    def heads(self, x: str, n_heads: int, head_dim: int) -> str:
        """``[b, s, h] -> [b, heads, s, d]`` through a Reshape whose shape is computed at runtime."""
        shape = self.op(
            "Concat",
            [
                self.dim(x, 0),
                self.dim(x, 1),
                self.const(np.array([n_heads], np.int64)),
                self.const(np.array([head_dim], np.int64)),
            ],
            axis=0,
        )
        return self.op("Transpose", [self.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])


def transformer(
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    vocab: int = 100,
    max_positions: int = 64,
    seed: int = 0,
    gelu: str = "erf",
    opset: int = OPSET,
) -> onnx.ModelProto:
    """An encoder (BERT-shaped) as torch.onnx exports it, with symbolic ``batch`` and ``sequence``.

    ``input_ids[batch, sequence]`` and ``attention_mask[batch, sequence]`` (int64) give
    ``last_hidden_state[batch, sequence, hidden]``. The graph carries the exporter's clutter:
    Shape->Gather->Unsqueeze->Concat->Reshape chains, Constant nodes for every literal, Identity
    on weights and inference Dropout. ``transformer(12, 768, 12, 30522, 512)`` is BERT-base sized
    (about 110M parameters and 1,200 nodes). ``gelu="tanh"`` writes GPT-2's tanh approximation
    instead of BERT's erf form; ``opset`` sets the default-domain opset (the ops are valid from 17 on).
    """
    g = _Exporter(np.random.default_rng(seed))
    head_dim = hidden // heads
    words = g.weight("embeddings.word_embeddings.weight", (vocab, hidden), 0.02)
    positions = g.weight("embeddings.position_embeddings.weight", (max_positions, hidden), 0.02)
    seq = g.op("Squeeze", [g.dim("input_ids", 1), g.const(np.array([0], np.int64))])
    position_ids = g.op(
        "Unsqueeze",
        [
            g.op("Range", [g.const(np.array(0, np.int64)), seq, g.const(np.array(1, np.int64))]),
            g.const(np.array([0], np.int64)),
        ],
    )
    x = g.op("Add", [g.op("Gather", [words, "input_ids"]), g.op("Gather", [positions, position_ids])])
    x = g.layer_norm(x, "embeddings.LayerNorm", hidden)
    mask = g.op(
        "Cast", [g.op("Unsqueeze", ["attention_mask", g.const(np.array([1, 2], np.int64))])], to=TensorProto.FLOAT
    )
    mask = g.op(
        "Mul", [g.op("Sub", [g.const(np.array(1.0, np.float32)), mask]), g.const(np.array(-10000.0, np.float32))]
    )
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = g.heads(g.linear(x, f"{p}.attention.self.query", hidden, hidden), heads, head_dim)
        k = g.heads(g.linear(x, f"{p}.attention.self.key", hidden, hidden), heads, head_dim)
        v = g.heads(g.linear(x, f"{p}.attention.self.value", hidden, hidden), heads, head_dim)
        scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.op("Add", [g.op("Div", [scores, g.const(np.array(head_dim**0.5, np.float32))]), mask])
        context = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])], perm=[0, 2, 1, 3])
        merged = g.op("Concat", [g.dim(context, 0), g.dim(context, 1), g.const(np.array([hidden], np.int64))], axis=0)
        attention = g.linear(g.op("Reshape", [context, merged]), f"{p}.attention.output.dense", hidden, hidden)
        attention = g.op("Dropout", [attention, g.const(np.array(0.1, np.float32))])
        x = g.layer_norm(g.op("Add", [attention, x]), f"{p}.attention.output.LayerNorm", hidden)
        h = g.linear(x, f"{p}.intermediate.dense", hidden, 4 * hidden)
        h = _gelu_tanh(g, h) if gelu == "tanh" else _gelu_erf(g, h)
        h = g.linear(h, f"{p}.output.dense", 4 * hidden, hidden)
        x = g.layer_norm(g.op("Add", [h, x]), f"{p}.output.LayerNorm", hidden)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="/output/Identity"))
    graph = helper.make_graph(
        g.nodes,
        "transformer",
        [
            helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
            for n in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
    model.ir_version = 8 if opset < 21 else 10
    return model


def _gelu_erf(g: _Exporter, h: str) -> str:
    """BERT's ``h * (1 + erf(h / sqrt 2)) * 0.5``."""
    erf = g.op("Erf", [g.op("Div", [h, g.const(np.array(2.0**0.5, np.float32))])])
    scaled = g.op("Mul", [h, g.op("Add", [erf, g.const(np.array(1.0, np.float32))])])
    return g.op("Mul", [scaled, g.const(np.array(0.5, np.float32))])


def _gelu_tanh(g: _Exporter, h: str) -> str:
    """GPT-2's ``0.5 * h * (1 + tanh(sqrt(2 / pi) * (h + 0.044715 * h^3)))``."""
    cubic = g.op("Mul", [g.const(np.array(0.044715, np.float32)), g.op("Pow", [h, g.const(np.array(3.0, np.float32))])])
    inner = g.op("Mul", [g.const(np.array((2.0 / np.pi) ** 0.5, np.float32)), g.op("Add", [h, cubic])])
    one = g.op("Add", [g.const(np.array(1.0, np.float32)), g.op("Tanh", [inner])])
    return g.op("Mul", [g.op("Mul", [g.const(np.array(0.5, np.float32)), h]), one])


def decoder(
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    intermediate: int = 64,
    vocab: int = 100,
    max_positions: int = 64,
    seed: int = 0,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A llama-style decoder as torch.onnx exports it, with symbolic ``batch`` and ``sequence``.

    ``input_ids[batch, sequence]`` (int64) gives ``logits[batch, sequence, vocab]``: RMSNorm written
    out (Pow, ReduceMean, Add, Sqrt, Div, Mul), rotary position embedding from cos/sin tables sliced
    to the sequence (rotate-half through Slice, Neg and Concat), a causal mask sliced from a constant
    table, bias-free projections, a SwiGLU MLP (x * Sigmoid(x) gate) and an untied lm_head.
    ``decoder(12, 768, 12, 2048, 32000, 512)`` is about 134M parameters. ``opset`` sets the
    default-domain opset (ReduceMean takes its axes as an input from 18 on).
    """
    g = _Exporter(np.random.default_rng(seed))
    head_dim = hidden // heads
    _rotary_tables(g, head_dim, max_positions)
    g.inits.append(
        numpy_helper.from_array(
            np.triu(np.full((max_positions, max_positions), -1e9), k=1).astype(np.float32), "causal_mask"
        )
    )
    seq = g.dim("input_ids", 1)
    zero, one = g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64))
    cos = g.op("Slice", ["rotary.cos", zero, seq, zero])
    sin = g.op("Slice", ["rotary.sin", zero, seq, zero])
    mask = g.op("Slice", [g.op("Slice", ["causal_mask", zero, seq, zero]), zero, seq, one])

    def rms_norm(x: str, prefix: str) -> str:
        return _rms_norm(g, x, prefix, hidden, opset)

    def proj(x: str, prefix: str, n_in: int, n_out: int) -> str:
        return _proj(g, x, prefix, n_in, n_out)

    def rotary(x: str) -> str:
        return _rotate(g, x, cos, sin, head_dim)

    x = g.op("Gather", [g.weight("model.embed_tokens.weight", (vocab, hidden), 0.02), "input_ids"])
    for i in range(layers):
        p = f"model.layers.{i}"
        h = rms_norm(x, f"{p}.input_layernorm")
        q = rotary(g.heads(proj(h, f"{p}.self_attn.q_proj", hidden, hidden), heads, head_dim))
        k = rotary(g.heads(proj(h, f"{p}.self_attn.k_proj", hidden, hidden), heads, head_dim))
        v = g.heads(proj(h, f"{p}.self_attn.v_proj", hidden, hidden), heads, head_dim)
        scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.op("Add", [g.op("Div", [scores, g.const(np.array(head_dim**0.5, np.float32))]), mask])
        context = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])], perm=[0, 2, 1, 3])
        merged = g.op("Concat", [g.dim(context, 0), g.dim(context, 1), g.const(np.array([hidden], np.int64))], axis=0)
        x = g.op("Add", [x, proj(g.op("Reshape", [context, merged]), f"{p}.self_attn.o_proj", hidden, hidden)])
        x = _swiglu_block(g, x, p, hidden, intermediate, opset)
    logits = proj(rms_norm(x, "model.norm"), "lm_head", hidden, vocab)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="/output/Identity"))
    graph = helper.make_graph(
        g.nodes,
        "decoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", vocab])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
    model.ir_version = 8 if opset < 21 else 10
    return model


def _rotary_tables(g: _Exporter, head_dim: int, max_positions: int) -> None:
    """The initializers ``rotary.cos`` and ``rotary.sin``: ``[max_positions, head_dim]`` tables, halves repeated."""
    half = head_dim // 2
    inv_freq = 1.0 / (10000.0 ** (np.arange(0, half, dtype=np.float64) / half))
    angles = np.outer(np.arange(max_positions), inv_freq)
    angles = np.concatenate([angles, angles], axis=-1)
    for name, table in (("rotary.cos", np.cos(angles)), ("rotary.sin", np.sin(angles))):
        g.inits.append(numpy_helper.from_array(table.astype(np.float32), name))


def _rms_norm(g: _Exporter, x: str, prefix: str, hidden: int, opset: int) -> str:
    """RMSNorm written out: ``weight * (x / Sqrt(ReduceMean(x ** 2) + 1e-6))``."""
    g.inits.append(numpy_helper.from_array(np.ones(hidden, np.float32), f"{prefix}.weight"))
    variance = g.reduce_mean(g.op("Pow", [x, g.const(np.array(2.0, np.float32))]), [-1], opset)
    rms = g.op("Sqrt", [g.op("Add", [variance, g.const(np.array(1e-6, np.float32))])])
    return g.op("Mul", [f"{prefix}.weight", g.op("Div", [x, rms])])


def _proj(g: _Exporter, x: str, prefix: str, n_in: int, n_out: int) -> str:
    """A bias-free projection ``x @ weight``."""
    return g.op("MatMul", [x, g.weight(f"{prefix}.weight", (n_in, n_out), (1.0 / n_in) ** 0.5)])


def _rotate(g: _Exporter, x: str, cos: str, sin: str, head_dim: int) -> str:
    """Rotary embedding ``x * cos + rotate_half(x) * sin`` on ``[b, heads, s, d]``, rotate-half through Slice,
    Neg and Concat."""
    half = head_dim // 2
    start, middle, end = (g.const(np.array([i], np.int64)) for i in (0, half, np.iinfo(np.int64).max))
    first = g.op("Slice", [x, start, middle, g.const(np.array([3], np.int64))])
    second = g.op("Slice", [x, middle, end, g.const(np.array([3], np.int64))])
    rotated = g.op("Concat", [g.op("Neg", [second]), first], axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])])


def _swiglu_block(g: _Exporter, x: str, prefix: str, hidden: int, intermediate: int, opset: int) -> str:
    """The residual MLP half of a llama layer: ``x + down(silu(gate(n)) * up(n))`` with ``n`` the RMS norm."""
    h = _rms_norm(g, x, f"{prefix}.post_attention_layernorm", hidden, opset)
    gate = _proj(g, h, f"{prefix}.mlp.gate_proj", hidden, intermediate)
    up = _proj(g, h, f"{prefix}.mlp.up_proj", hidden, intermediate)
    act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up])
    return g.op("Add", [x, _proj(g, act, f"{prefix}.mlp.down_proj", intermediate, hidden)])


def kv_decoder(
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 64,
    vocab: int = 100,
    max_positions: int = 64,
    seed: int = 0,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A llama-style decoder with a KV cache and grouped-query attention, as the TorchScript exporter writes
    transformers' LlamaForCausalLM (SDPA attention) called with past keys and values.

    Inputs: ``input_ids[batch, sequence]``, ``attention_mask[batch, total_sequence]`` (int64, past and new
    tokens) and per layer ``past_key_I`` / ``past_value_I`` ``[batch, kv_heads, past_sequence, head_dim]``.
    Outputs: ``logits[batch, sequence, vocab]`` and per layer ``present_key_I`` / ``present_value_I``
    ``[batch, kv_heads, total_sequence, head_dim]``: the past Concat-ed with the new keys (after rotary)
    and values. Positions start at the past length (Range from ``Shape(past_key_0)[2]``), rotary tables
    are Gather-ed at those positions; the kv heads are repeated for the query heads through
    Unsqueeze -> Expand -> Reshape (``repeat_kv``); the scale is split as ``sqrt(scale)`` Mul on Q and on
    the transposed K (how the exporter writes ``scaled_dot_product_attention``), the mask is an additive
    bias from the causal offset and the padding mask, and Softmax is followed by the exporter's
    ``Where(IsNaN(p), 0, p)`` guard.
    """
    g = _Exporter(np.random.default_rng(seed))
    head_dim, group = hidden // heads, heads // kv_heads
    _rotary_tables(g, head_dim, max_positions)
    zero, one = g.const(np.array(0, np.int64)), g.const(np.array(1, np.int64))
    past = g.op("Gather", [g.op("Shape", ["past_key_0"]), g.const(np.array(2, np.int64))], axis=0)
    total = g.op("Add", [past, g.op("Gather", [g.op("Shape", ["input_ids"]), one], axis=0)])
    positions = g.op("Range", [past, total, one])
    cos = g.op("Unsqueeze", [g.op("Gather", ["rotary.cos", positions]), g.const(np.array([0, 1], np.int64))])
    sin = g.op("Unsqueeze", [g.op("Gather", ["rotary.sin", positions]), g.const(np.array([0, 1], np.int64))])
    # bias[b, 1, q, k] = 0 where key k <= past + q and attention_mask[b, k], else the float minimum
    causal = g.op(
        "LessOrEqual",
        [
            g.op("Unsqueeze", [g.op("Range", [zero, total, one]), g.const(np.array([0], np.int64))]),
            g.op("Unsqueeze", [positions, g.const(np.array([1], np.int64))]),
        ],
    )
    padding = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const(np.array([1, 2], np.int64))])], to=9)
    allowed = g.op("And", [g.op("Unsqueeze", [causal, g.const(np.array([0, 1], np.int64))]), padding])
    bias = g.op("Where", [allowed, g.const(np.array(0.0, np.float32)), g.const(np.array(-3.4e38, np.float32))])
    root_scale = g.const(np.array(head_dim**-0.25, np.float32))

    def repeat_kv(x: str) -> str:
        """``[b, kv, t, d] -> [b, kv * group, t, d]``, each kv head repeated ``group`` times."""
        shape = g.op(
            "Concat",
            [g.dim(x, 0), g.const(np.array([kv_heads, group], np.int64)), g.dim(x, 2), g.const(np.array([head_dim]))],
            axis=0,
        )
        expanded = g.op("Expand", [g.op("Unsqueeze", [x, g.const(np.array([2], np.int64))]), shape])
        merged = g.op(
            "Concat",
            [g.dim(x, 0), g.const(np.array([heads], np.int64)), g.dim(x, 2), g.const(np.array([head_dim]))],
            axis=0,
        )
        return g.op("Reshape", [expanded, merged])

    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "sequence", vocab])]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total_sequence"]),
    ]
    x = g.op("Gather", [g.weight("model.embed_tokens.weight", (vocab, hidden), 0.02), "input_ids"])
    for i in range(layers):
        p = f"model.layers.{i}"
        h = _rms_norm(g, x, f"{p}.input_layernorm", hidden, opset)
        q = _rotate(
            g, g.heads(_proj(g, h, f"{p}.self_attn.q_proj", hidden, hidden), heads, head_dim), cos, sin, head_dim
        )
        k = _rotate(
            g,
            g.heads(_proj(g, h, f"{p}.self_attn.k_proj", hidden, kv_heads * head_dim), kv_heads, head_dim),
            cos,
            sin,
            head_dim,
        )
        v = g.heads(_proj(g, h, f"{p}.self_attn.v_proj", hidden, kv_heads * head_dim), kv_heads, head_dim)
        for kind, new in (("key", k), ("value", v)):
            g.nodes.append(
                helper.make_node(
                    "Concat", [f"past_{kind}_{i}", new], [f"present_{kind}_{i}"], name=g.name("Concat"), axis=2
                )
            )
            cache_shape: list[str | int] = ["batch", kv_heads, "past_sequence", head_dim]
            inputs.append(helper.make_tensor_value_info(f"past_{kind}_{i}", TensorProto.FLOAT, cache_shape))
            outputs.append(
                helper.make_tensor_value_info(
                    f"present_{kind}_{i}", TensorProto.FLOAT, ["batch", kv_heads, "total_sequence", head_dim]
                )
            )
        keys = g.op("Transpose", [repeat_kv(f"present_key_{i}")], perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [g.op("Mul", [q, root_scale]), g.op("Mul", [keys, root_scale])])
        probs = g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1)
        probs = g.op("Where", [g.op("IsNaN", [probs]), g.const(np.array(0.0, np.float32)), probs])
        context = g.op("Transpose", [g.op("MatMul", [probs, repeat_kv(f"present_value_{i}")])], perm=[0, 2, 1, 3])
        merged = g.op("Concat", [g.dim(context, 0), g.dim(context, 1), g.const(np.array([hidden], np.int64))], axis=0)
        attention = _proj(g, g.op("Reshape", [context, merged]), f"{p}.self_attn.o_proj", hidden, hidden)
        x = _swiglu_block(g, g.op("Add", [x, attention]), p, hidden, intermediate, opset)
    logits = _proj(g, _rms_norm(g, x, "model.norm", hidden, opset), "lm_head", hidden, vocab)
    g.nodes.append(helper.make_node("Identity", [logits], ["logits"], name="/output/Identity"))
    graph = helper.make_graph(g.nodes, "kv_decoder", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
    model.ir_version = 8 if opset < 21 else 10
    return model


def _finish(
    g: _Exporter, name: str, inputs: list[onnx.ValueInfoProto], output: str, out_shape: list, opset: int = OPSET
) -> onnx.ModelProto:
    """An exporter-style model: the last value renamed through an Identity, opset 17 (or ``opset``)."""
    g.nodes.append(helper.make_node("Identity", [output], ["last_hidden_state"], name="/output/Identity"))
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(g.nodes, name, inputs, [out], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="pytorch")
    model.ir_version = 8 if opset < 21 else 10
    return model


def gpt2(
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    vocab: int = 100,
    max_positions: int = 64,
    seed: int = 0,
    *,
    exporter: str = "torchscript",
    kv_heads: int | None = None,
    causal_mask: bool = True,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """GPT-2 as the TorchScript exporter writes it (transformers' GPT2Model), symbolic ``batch`` and ``sequence``.

    ``input_ids[batch, sequence]`` and ``attention_mask[batch, sequence]`` (int64) give
    ``last_hidden_state``. Reproduces what torch.onnx.export (``dynamo=False``) makes of it: Conv1D
    layers as ``Reshape(x, [-1, in]) -> Gemm -> Reshape(x.shape[:-1] + [out])`` with both shapes
    computed at run time, the fused QKV projection Split three ways, heads reshaped through
    Shape->Gather->Unsqueeze->Concat chains, keys transposed by ``[0, 2, 3, 1]``, the causal and
    padding mask built from Range, Unsqueeze chains, ``LessOrEqual``, ``And(True, x)`` and an Expand
    whose shape goes through ``Where(Equal(shape, -1), 1, shape)``, the tanh Gelu written out, and
    Constant nodes and weight Identities everywhere. transformers 5's SDPA attention is written as
    ``MatMul(q * s, k^T * s)`` with ``s = head_dim ** -0.25``, the mask as ``Where(keep, 0, fill)``
    added to the scores, and ``Where(IsNaN(p), 0, p)`` after the Softmax.

    ``exporter="dynamo"`` writes the dynamo exporter's differences: the mask filled with float32's
    lowest value instead of ``-inf``, and keys transposed by ``[0, 1, 3, 2]`` after the head split.
    ``kv_heads`` (a divisor of ``heads``) makes it grouped-query attention as llama and qwen2 export it:
    K and V projected to ``kv_heads`` heads and repeated by transformers' ``repeat_kv``,
    ``Reshape(Expand(Unsqueeze(kv, 2), [b, kv_heads, n_rep, s, d]), [b, heads, s, d])``, with the
    keys transposed by ``[0, 1, 3, 2]``. ``causal_mask=False`` leaves the padding mask alone, as BERT-style
    encoders (BERT, DistilBERT) export it. ``opset`` sets the default-domain opset.
    """
    g = _Exporter(np.random.default_rng(seed))
    head_dim = hidden // heads
    groups = kv_heads or heads  # key/value heads
    big = np.iinfo(np.int64).max

    def conv1d(x: str, prefix: str, n_in: int, n_out: int) -> str:
        size_out = g.op("Concat", [g.dim(x, 0), g.dim(x, 1), g.const(np.array([n_out], np.int64))], axis=0)
        last = g.op(
            "Slice",
            [
                g.op("Shape", [x]),
                g.const(np.array([-1], np.int64)),
                g.const(np.array([big], np.int64)),
                g.const(np.array([0], np.int64)),
            ],
        )
        flat = g.op("Reshape", [x, g.op("Concat", [g.const(np.array([-1], np.int64)), last], axis=0)])
        w = g.weight(f"{prefix}.weight", (n_in, n_out), (1.0 / n_in) ** 0.5)
        b = g.weight(f"{prefix}.bias", (n_out,), 0.02)
        return g.op("Reshape", [g.op("Gemm", [flat, w, b]), size_out])

    def unsqueezed(x: str, axes: list[int]) -> str:
        for axis in axes:  # one Unsqueeze per axis, as the exporter writes x[None, None, :, None]
            x = g.op("Unsqueeze", [x, g.const(np.array([axis], np.int64))])
        return x

    def repeat_kv(x: str) -> str:
        """transformers' repeat_kv: ``[b, kv_heads, s, d] -> [b, heads, s, d]``, each head repeated."""
        shape = [g.dim(x, 0), g.const(np.array([groups, heads // groups], np.int64)), g.dim(x, 2)]
        expanded = g.op(
            "Expand",
            [
                g.op("Unsqueeze", [x, g.const(np.array([2], np.int64))]),
                g.op("Concat", [*shape, g.const(np.array([head_dim], np.int64))], axis=0),
            ],
        )
        return g.op("Reshape", [expanded, g.const(np.array([0, heads, -1, head_dim], np.int64))])

    def layer_norm(x: str, prefix: str) -> str:
        rng = g.rng
        g.inits.append(
            numpy_helper.from_array((1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32), f"{prefix}.weight")
        )
        g.inits.append(
            numpy_helper.from_array((0.1 * rng.standard_normal(hidden)).astype(np.float32), f"{prefix}.bias")
        )
        return g.op("LayerNormalization", [x, f"{prefix}.weight", f"{prefix}.bias"], axis=-1, epsilon=1e-5)

    wte = g.weight("wte.weight", (vocab, hidden), 0.02)
    wpe = g.weight("wpe.weight", (max_positions, hidden), 0.02)
    seq = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const(np.array(1, np.int64))], axis=0)
    zero, one = g.const(np.array(0, np.int64)), g.const(np.array(1, np.int64))
    positions = g.op("Range", [zero, seq, one])
    x = g.op("Add", [g.op("Gather", [wte, "input_ids"]), g.op("Gather", [wpe, unsqueezed(positions, [0])])])

    # mask[b, 1, q, k] = k <= q and attention_mask[b, k], expanded to [batch, 1, sequence, sequence]
    causal = g.op("LessOrEqual", [unsqueezed(positions, [0, 1, 2]), unsqueezed(positions, [0, 1, 3])])
    everything = g.op(
        "ConstantOfShape", [g.const(np.array([1], np.int64))], value=numpy_helper.from_array(np.array([True]))
    )
    causal = g.op("And", [everything, causal])
    padding = unsqueezed(g.op("Cast", ["attention_mask"], to=TensorProto.BOOL), [1, 2])
    shape = g.op(
        "Concat",
        [g.dim("input_ids", 0), g.const(np.array([-1], np.int64)), g.dim("input_ids", 1), g.dim("input_ids", 1)],
        axis=0,
    )
    minus = g.op(
        "Mul",
        [
            g.op(
                "ConstantOfShape",
                [g.const(np.array([4], np.int64))],
                value=numpy_helper.from_array(np.array([1], np.int64)),
            ),
            g.const(np.array(-1, np.int64)),
        ],
    )
    shape = g.op("Where", [g.op("Equal", [shape, minus]), g.const(np.ones(4, np.int64)), shape])
    mask = g.op("Expand", [g.op("And", [causal, padding]) if causal_mask else padding, shape])
    fill = np.float32(-np.inf) if exporter == "torchscript" else np.finfo(np.float32).min
    bias = g.op("Where", [mask, g.const(np.array(0.0, np.float32)), g.const(np.array(fill, np.float32))])
    kv_hidden = groups * head_dim

    scale = g.const(np.array(head_dim**-0.25, np.float32))
    for i in range(layers):
        p = f"h.{i}"
        qkv = conv1d(layer_norm(x, f"{p}.ln_1"), f"{p}.attn.c_attn", hidden, hidden + 2 * kv_hidden)
        split = [f"/{p}/attn/Split_output_{j}" for j in range(3)]
        sizes = g.const(np.array([hidden, kv_hidden, kv_hidden], np.int64))
        g.nodes.append(helper.make_node("Split", [qkv, sizes], split, name=g.name("Split"), axis=2))
        q, k, v = split
        shapes = [
            g.op(
                "Concat",
                [
                    g.dim(t, 0),
                    g.dim(t, 1),
                    g.const(np.array([n], np.int64)),
                    g.const(np.array([head_dim], np.int64)),
                ],
                axis=0,
            )
            for t, n in ((q, heads), (k, groups), (v, groups))
        ]
        q = g.op("Transpose", [g.op("Reshape", [q, shapes[0]])], perm=[0, 2, 1, 3])
        v = g.op("Transpose", [g.op("Reshape", [v, shapes[2]])], perm=[0, 2, 1, 3])
        if exporter == "torchscript" and groups == heads:
            k = g.op("Transpose", [g.op("Reshape", [k, shapes[1]])], perm=[0, 2, 3, 1])
        else:
            k = g.op("Transpose", [g.op("Reshape", [k, shapes[1]])], perm=[0, 2, 1, 3])
            if groups != heads:
                k, v = repeat_kv(k), repeat_kv(v)
            k = g.op("Transpose", [k], perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [g.op("Mul", [q, scale]), g.op("Mul", [k, scale])])
        probs = g.op("Softmax", [g.op("Add", [scores, bias])], axis=-1)
        probs = g.op("Where", [g.op("IsNaN", [probs]), g.const(np.array(0.0, np.float32)), probs])
        context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        merged = g.op("Concat", [g.dim(context, 0), g.dim(context, 1), g.const(np.array([-1], np.int64))], axis=0)
        x = g.op("Add", [conv1d(g.op("Reshape", [context, merged]), f"{p}.attn.c_proj", hidden, hidden), x])
        h = conv1d(layer_norm(x, f"{p}.ln_2"), f"{p}.mlp.c_fc", hidden, 4 * hidden)
        cube = g.op(
            "Mul", [g.op("Pow", [h, g.const(np.array(3.0, np.float32))]), g.const(np.array(0.044715, np.float32))]
        )
        inner = g.op("Mul", [g.op("Add", [h, cube]), g.const(np.array((2 / np.pi) ** 0.5, np.float32))])
        gelu = g.op(
            "Mul",
            [
                g.op("Mul", [h, g.const(np.array(0.5, np.float32))]),
                g.op("Add", [g.op("Tanh", [inner]), g.const(np.array(1.0, np.float32))]),
            ],
        )
        x = g.op("Add", [x, conv1d(gelu, f"{p}.mlp.c_proj", 4 * hidden, hidden)])
    x = layer_norm(x, "ln_f")
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    return _finish(g, "gpt2", inputs, x, ["batch", "sequence", hidden], opset)


def vit(
    layers: int = 2,
    hidden: int = 32,
    heads: int = 4,
    patch: int = 4,
    image: int = 16,
    seed: int = 0,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """A ViT encoder as the TorchScript exporter writes it (transformers' ViTModel), symbolic ``batch``.

    ``pixel_values[batch, 3, image, image]`` gives ``last_hidden_state[batch, 1 + patches, hidden]``:
    the patch Conv flattened through ``Reshape(x, Concat(Shape(x)[:2], [-1]))`` and transposed, the
    class token expanded to the batch through ``Where(Equal(shape, -1), 1, shape)``, separate Q/K/V
    MatMul + Add projections, heads reshaped through Shape->Gather->Unsqueeze->Concat chains, keys
    transposed by ``[0, 2, 3, 1]``, the erf Gelu written out, Constant nodes and weight Identities.
    """
    g = _Exporter(np.random.default_rng(seed))
    head_dim = hidden // heads
    tokens = 1 + (image // patch) ** 2
    g.inits.append(_init(g.rng, "patch.weight", (hidden, 3, patch, patch), (1.0 / (3 * patch * patch)) ** 0.5))
    g.inits.append(_init(g.rng, "patch.bias", (hidden,), 0.02))
    g.inits.append(_init(g.rng, "cls_token", (1, 1, hidden), 0.02))
    g.inits.append(_init(g.rng, "position_embeddings", (1, tokens, hidden), 0.02))
    batch = g.op("Gather", [g.op("Shape", ["pixel_values"]), g.const(np.array(0, np.int64))], axis=0)
    conv = g.op(
        "Conv", ["pixel_values", "patch.weight", "patch.bias"], kernel_shape=[patch, patch], strides=[patch, patch]
    )
    lead = g.op(
        "Slice",
        [
            g.op("Shape", [conv]),
            g.const(np.array([0], np.int64)),
            g.const(np.array([2], np.int64)),
            g.const(np.array([0], np.int64)),
        ],
    )
    flat = g.op("Reshape", [conv, g.op("Concat", [lead, g.const(np.array([-1], np.int64))], axis=0)])
    patches = g.op("Transpose", [flat], perm=[0, 2, 1])
    minus_one = g.const(np.array([-1], np.int64))
    shape = g.op("Concat", [g.op("Unsqueeze", [batch, g.const(np.array([0], np.int64))]), minus_one, minus_one], axis=0)
    shape = g.op("Reshape", [shape, g.const(np.array([-1], np.int64))])
    ones = g.op("ConstantOfShape", [g.op("Shape", [shape])], value=numpy_helper.from_array(np.array([1], np.int64)))
    shape = g.op("Where", [g.op("Equal", [shape, g.op("Mul", [ones, g.const(np.array(-1, np.int64))])]), ones, shape])
    cls = g.op("Expand", ["cls_token", shape])
    x = g.op("Add", [g.op("Concat", [cls, patches], axis=1), "position_embeddings"])

    def layer_norm(x: str, prefix: str) -> str:
        g.inits.append(
            numpy_helper.from_array((1 + 0.1 * g.rng.standard_normal(hidden)).astype(np.float32), f"{prefix}.weight")
        )
        g.inits.append(
            numpy_helper.from_array((0.1 * g.rng.standard_normal(hidden)).astype(np.float32), f"{prefix}.bias")
        )
        return g.op("LayerNormalization", [x, f"{prefix}.weight", f"{prefix}.bias"], axis=-1, epsilon=1e-12)

    scale = g.const(np.array(head_dim**-0.25, np.float32))
    for i in range(layers):
        p = f"layers.{i}"
        h = layer_norm(x, f"{p}.layernorm_before")
        q, k, v = (g.linear(h, f"{p}.attention.{n}_proj", hidden, hidden) for n in "qkv")
        shapes = [
            g.op(
                "Concat",
                [
                    g.dim(h, 0),
                    g.dim(h, 1),
                    g.const(np.array([heads], np.int64)),
                    g.const(np.array([head_dim], np.int64)),
                ],
                axis=0,
            )
            for _ in range(3)
        ]
        q = g.op("Transpose", [g.op("Reshape", [q, shapes[0]])], perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, shapes[1]])], perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, shapes[2]])], perm=[0, 2, 1, 3])
        scores = g.op("MatMul", [g.op("Mul", [q, scale]), g.op("Mul", [k, scale])])
        context = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])], perm=[0, 2, 1, 3])
        merged = g.op("Concat", [g.dim(context, 0), g.dim(context, 1), g.const(np.array([hidden], np.int64))], axis=0)
        x = g.op("Add", [g.linear(g.op("Reshape", [context, merged]), f"{p}.attention.o_proj", hidden, hidden), x])
        h = g.linear(layer_norm(x, f"{p}.layernorm_after"), f"{p}.mlp.fc1", hidden, 4 * hidden)
        erf = g.op("Erf", [g.op("Div", [h, g.const(np.array(2.0**0.5, np.float32))])])
        h = g.op(
            "Mul",
            [
                g.op("Mul", [h, g.op("Add", [erf, g.const(np.array(1.0, np.float32))])]),
                g.const(np.array(0.5, np.float32)),
            ],
        )
        x = g.op("Add", [g.linear(h, f"{p}.mlp.fc2", 4 * hidden, hidden), x])
    x = layer_norm(x, "layernorm")
    inputs = [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, image, image])]
    return _finish(g, "vit", inputs, x, ["batch", tokens, hidden], opset)


def repeated_layers(hidden: int = 64, layers: int = 2, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """An MLP ``x[batch, hidden] -> logits[batch, classes]`` whose hidden layers hold identical weights.

    Reproduces an untrained ``torch.nn.TransformerEncoder`` export: the module deep-copies one layer,
    so every layer's weights are equal (separate initializers, equal bytes, which optimization merges
    into one), and the TorchScript exporter writes each 2-D Linear as ``Gemm(transB=1)``.
    """
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((hidden, hidden)) * hidden**-0.5).astype(np.float32)
    bias = (rng.standard_normal(hidden) * 0.1).astype(np.float32)
    inits, nodes, current = [], [], "x"
    for i in range(layers):
        w, b, out = f"layers.{i}.weight", f"layers.{i}.bias", f"/layers.{i}/Gemm_output_0"
        inits += [numpy_helper.from_array(weight, w), numpy_helper.from_array(bias, b)]
        nodes += [
            helper.make_node("Gemm", [current, w, b], [out], name=f"/layers.{i}/Gemm", transB=1),
            helper.make_node("Relu", [out], [f"/layers.{i}/Relu_output_0"], name=f"/layers.{i}/Relu"),
        ]
        current = f"/layers.{i}/Relu_output_0"
    inits += [_init(rng, "head.weight", (classes, hidden), hidden**-0.5), _init(rng, "head.bias", (classes,), 0.1)]
    nodes.append(
        helper.make_node("Gemm", [current, "head.weight", "head.bias"], ["logits"], name="/head/Gemm", transB=1)
    )
    graph = helper.make_graph(
        nodes,
        "repeated_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", hidden])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
    model.ir_version = 8
    return model


def cnn(channels: int = 4, image: int = 8, classes: int = 10, seed: int = 0) -> onnx.ModelProto:
    """A small CNN ``x[batch, 1, image, image] -> logits[batch, classes]``: Conv, BatchNormalization,
    Relu, MaxPool, a depthwise Conv, a pointwise Conv, GlobalAveragePool, Flatten and Gemm."""
    rng = np.random.default_rng(seed)
    c, wide = channels, 2 * channels
    inits = [
        _init(rng, "conv1.weight", (c, 1, 3, 3), (2.0 / 9) ** 0.5),
        _init(rng, "conv1.bias", (c,), 0.01),
        numpy_helper.from_array(np.ones(c, np.float32), "bn1.scale"),
        numpy_helper.from_array(np.zeros(c, np.float32), "bn1.bias"),
        numpy_helper.from_array(np.zeros(c, np.float32), "bn1.running_mean"),
        numpy_helper.from_array(np.ones(c, np.float32), "bn1.running_var"),
        _init(rng, "dw.weight", (c, 1, 3, 3), (2.0 / 9) ** 0.5),
        _init(rng, "pw.weight", (wide, c, 1, 1), (2.0 / c) ** 0.5),
        _init(rng, "pw.bias", (wide,), 0.01),
        _init(rng, "fc.weight", (classes, wide), (1.0 / wide) ** 0.5),
        _init(rng, "fc.bias", (classes,), 0.01),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c1", "bn1.scale", "bn1.bias", "bn1.running_mean", "bn1.running_var"],
            ["b1"],
            name="bn1",
        ),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "dw.weight"], ["d1"], name="dw", group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["d1"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "pw.weight", "pw.bias"], ["c2"], name="pw"),
        helper.make_node("Relu", ["c2"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="onnxgraph")
    model.ir_version = 8
    return model


def resnet18(classes: int = 1000, image: int = 224, width: int = 64, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 as torchvision exports it: ``x[batch, 3, image, image] -> logits[batch, classes]``.

    A 7x7 stride-2 Conv, BatchNormalization, Relu and MaxPool stem; four stages of two basic blocks
    (3x3 Convs with BatchNormalization, a 1x1 stride-2 Conv on the shortcut where the shape changes);
    GlobalAveragePool, Flatten and Gemm. Weights are He-initialized and BatchNormalization carries
    random statistics, so folding it changes the weights. ``width`` scales the channels (64: ResNet-18).
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def conv_bn(x: str, name: str, c_in: int, c_out: int, kernel: int, stride: int, relu: bool) -> str:
        inits.append(_init(rng, f"{name}.weight", (c_out, c_in, kernel, kernel), (2.0 / (c_in * kernel**2)) ** 0.5))
        inits.extend(
            [
                numpy_helper.from_array((1 + 0.1 * rng.standard_normal(c_out)).astype(np.float32), f"{name}.bn.scale"),
                numpy_helper.from_array((0.1 * rng.standard_normal(c_out)).astype(np.float32), f"{name}.bn.bias"),
                numpy_helper.from_array((0.1 * rng.standard_normal(c_out)).astype(np.float32), f"{name}.bn.mean"),
                numpy_helper.from_array(rng.uniform(0.5, 1.5, c_out).astype(np.float32), f"{name}.bn.var"),
            ]
        )
        pad = kernel // 2
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"{name}.weight"],
                [f"{name}.conv"],
                name=f"{name}.conv",
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        bn_inputs = [f"{name}.conv"] + [f"{name}.bn.{p}" for p in ("scale", "bias", "mean", "var")]
        nodes.append(helper.make_node("BatchNormalization", bn_inputs, [f"{name}.bn"], name=f"{name}.bn"))
        if not relu:
            return f"{name}.bn"
        nodes.append(helper.make_node("Relu", [f"{name}.bn"], [f"{name}.relu"], name=f"{name}.relu"))
        return f"{name}.relu"

    x = conv_bn("x", "conv1", 3, width, 7, 2, relu=True)
    nodes.append(
        helper.make_node(
            "MaxPool", [x], ["maxpool"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        )
    )
    x, c_in = "maxpool", width
    for stage, c_out in enumerate((width, 2 * width, 4 * width, 8 * width), start=1):
        for block in range(2):
            name, stride = f"layer{stage}.{block}", 2 if stage > 1 and block == 0 else 1
            h = conv_bn(x, f"{name}.conv1", c_in, c_out, 3, stride, relu=True)
            h = conv_bn(h, f"{name}.conv2", c_out, c_out, 3, 1, relu=False)
            shortcut = conv_bn(x, f"{name}.downsample", c_in, c_out, 1, stride, relu=False) if stride > 1 else x
            nodes.append(helper.make_node("Add", [h, shortcut], [f"{name}.add"], name=f"{name}.add"))
            nodes.append(helper.make_node("Relu", [f"{name}.add"], [f"{name}.out"], name=f"{name}.out"))
            x, c_in = f"{name}.out", c_out
    inits += [_init(rng, "fc.weight", (classes, c_in), (1.0 / c_in) ** 0.5), _init(rng, "fc.bias", (classes,), 0.01)]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["avgpool"], name="avgpool"),
        helper.make_node("Flatten", ["avgpool"], ["flatten"], name="flatten"),
        helper.make_node("Gemm", ["flatten", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "resnet18",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, image, image])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
    model.ir_version = 8
    return model


def resnet_like(
    blocks: int = 2,
    channels: int = 8,
    image: int = 16,
    classes: int = 10,
    seed: int = 0,
    *,
    opset: int = OPSET,
    ir_version: int = 8,
    initializers_as_inputs: bool = False,
    head_scale: float = 0.05,
) -> onnx.ModelProto:
    """A ResNet-like CNN ``x[batch, 3, image, image] -> logits[batch, classes]``, as torchvision exports it.

    A stem Conv, then residual blocks (Conv, BatchNormalization with trained-looking statistics, Relu,
    Conv, BatchNormalization, Add of the shortcut, Relu), GlobalAveragePool, Flatten and a Gemm whose
    small weights put most logits near zero: the outputs on which an element-wise float16 check trips.
    ``ir_version=3, opset=8, initializers_as_inputs=True`` gives the ONNX model zoo's ResNet layout
    (every initializer also a graph input); ``head_scale`` scales the classifier's weights.
    """
    rng = np.random.default_rng(seed)
    c = channels
    inits = [_init(rng, "stem.weight", (c, 3, 3, 3), (2.0 / 27) ** 0.5), _init(rng, "stem.bias", (c,), 0.01)]
    nodes = [helper.make_node("Conv", ["x", "stem.weight", "stem.bias"], ["h0"], name="stem", pads=[1, 1, 1, 1])]
    current = "h0"
    for b in range(blocks):
        shortcut = current
        for k in (1, 2):
            p = f"block{b}.conv{k}"
            inits += [
                _init(rng, f"{p}.weight", (c, c, 3, 3), (2.0 / (9 * c)) ** 0.5),
                numpy_helper.from_array((1 + 0.1 * rng.standard_normal(c)).astype(np.float32), f"{p}.bn.scale"),
                numpy_helper.from_array((0.1 * rng.standard_normal(c)).astype(np.float32), f"{p}.bn.bias"),
                numpy_helper.from_array((0.1 * rng.standard_normal(c)).astype(np.float32), f"{p}.bn.mean"),
                numpy_helper.from_array((0.5 + rng.random(c)).astype(np.float32), f"{p}.bn.var"),
            ]
            nodes += [
                helper.make_node("Conv", [current, f"{p}.weight"], [f"{p}.out"], name=p, pads=[1, 1, 1, 1]),
                helper.make_node(
                    "BatchNormalization",
                    [f"{p}.out", f"{p}.bn.scale", f"{p}.bn.bias", f"{p}.bn.mean", f"{p}.bn.var"],
                    [f"{p}.bn.out"],
                    name=f"{p}.bn",
                ),
            ]
            current = f"{p}.bn.out"
            if k == 1:
                nodes.append(helper.make_node("Relu", [current], [f"{p}.relu"], name=f"{p}.relu"))
                current = f"{p}.relu"
        nodes += [
            helper.make_node("Add", [current, shortcut], [f"block{b}.sum"], name=f"block{b}.add"),
            helper.make_node("Relu", [f"block{b}.sum"], [f"block{b}.out"], name=f"block{b}.relu"),
        ]
        current = f"block{b}.out"
    inits += [_init(rng, "fc.weight", (classes, c), head_scale / c**0.5), _init(rng, "fc.bias", (classes,), 0.001)]
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pooled"], name="gap"),
        helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, image, image])]
    if initializers_as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, t.dims) for t in inits]
    graph = helper.make_graph(
        nodes,
        "resnet_like",
        inputs,
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="onnxgraph")
    model.ir_version = ir_version
    return model


TRANSFORMER_OPSET = 20
"""Gelu joined the default domain in opset 20."""


def transformer_block(
    vocab: int = 32, seq: int = 8, dim: int = 16, heads: int = 2, ff: int = 32, layers: int = 1, seed: int = 0
) -> onnx.ModelProto:
    """A causal transformer ``ids[batch, seq] -> logits[batch, seq, vocab]``: Gather embeddings plus
    learned positions, then ``layers`` pre-norm blocks (LayerNormalization, multi-head attention with
    MatMul, a causal mask and Softmax, Gelu MLP, residual Adds), a final LayerNormalization and an
    output projection."""
    rng = np.random.default_rng(seed)
    head_dim = dim // heads
    inits = [
        _init(rng, "embed", (vocab, dim), 0.5),
        _init(rng, "pos", (seq, dim), 0.1),
        numpy_helper.from_array(np.triu(np.full((seq, seq), -1e4, np.float32), 1), "causal_mask"),
        numpy_helper.from_array(np.array([0, seq, heads, head_dim], np.int64), "heads_shape"),
        numpy_helper.from_array(np.array([0, seq, dim], np.int64), "merged_shape"),
        numpy_helper.from_array(np.array(1.0 / head_dim**0.5, np.float32), "attn_scale"),
    ]
    nodes = [
        helper.make_node("Gather", ["embed", "ids"], ["tok"], name="embed"),
        helper.make_node("Add", ["tok", "pos"], ["h0"], name="add_pos"),
    ]
    current = "h0"
    for i in range(layers):
        p = f"l{i}."
        for name, shape, scale in (
            ("ln1.scale", (dim,), None),
            ("ln1.bias", (dim,), 0.0),
            ("wq", (dim, dim), dim**-0.5),
            ("wk", (dim, dim), dim**-0.5),
            ("wv", (dim, dim), dim**-0.5),
            ("wo", (dim, dim), dim**-0.5),
            ("ln2.scale", (dim,), None),
            ("ln2.bias", (dim,), 0.0),
            ("w1", (dim, ff), dim**-0.5),
            ("b1", (ff,), 0.01),
            ("w2", (ff, dim), ff**-0.5),
            ("b2", (dim,), 0.01),
        ):
            if scale is None:
                inits.append(numpy_helper.from_array(np.ones(shape, np.float32), p + name))
            else:
                inits.append(_init(rng, p + name, shape, scale))
        nodes += [
            helper.make_node(
                "LayerNormalization", [current, p + "ln1.scale", p + "ln1.bias"], [p + "n1"], name=p + "ln1"
            ),
            *[helper.make_node("MatMul", [p + "n1", p + w], [p + w + "_out"], name=p + w) for w in ("wq", "wk", "wv")],
            *[
                helper.make_node("Reshape", [p + w + "_out", "heads_shape"], [p + w + "_h"], name=p + w + "_split")
                for w in ("wq", "wk", "wv")
            ],
            helper.make_node("Transpose", [p + "wq_h"], [p + "q"], name=p + "q_t", perm=[0, 2, 1, 3]),
            helper.make_node("Transpose", [p + "wk_h"], [p + "kt"], name=p + "k_t", perm=[0, 2, 3, 1]),
            helper.make_node("Transpose", [p + "wv_h"], [p + "v"], name=p + "v_t", perm=[0, 2, 1, 3]),
            helper.make_node("MatMul", [p + "q", p + "kt"], [p + "scores"], name=p + "scores"),
            helper.make_node("Mul", [p + "scores", "attn_scale"], [p + "scaled"], name=p + "scale"),
            helper.make_node("Add", [p + "scaled", "causal_mask"], [p + "masked"], name=p + "mask"),
            helper.make_node("Softmax", [p + "masked"], [p + "attn"], name=p + "softmax", axis=-1),
            helper.make_node("MatMul", [p + "attn", p + "v"], [p + "ctx"], name=p + "ctx"),
            helper.make_node("Transpose", [p + "ctx"], [p + "ctx_t"], name=p + "ctx_t", perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [p + "ctx_t", "merged_shape"], [p + "merged"], name=p + "merge"),
            helper.make_node("MatMul", [p + "merged", p + "wo"], [p + "proj"], name=p + "wo"),
            helper.make_node("Add", [current, p + "proj"], [p + "h1"], name=p + "residual1"),
            helper.make_node(
                "LayerNormalization", [p + "h1", p + "ln2.scale", p + "ln2.bias"], [p + "n2"], name=p + "ln2"
            ),
            helper.make_node("MatMul", [p + "n2", p + "w1"], [p + "f1"], name=p + "w1"),
            helper.make_node("Add", [p + "f1", p + "b1"], [p + "f1b"], name=p + "b1"),
            helper.make_node("Gelu", [p + "f1b"], [p + "act"], name=p + "gelu"),
            helper.make_node("MatMul", [p + "act", p + "w2"], [p + "f2"], name=p + "w2"),
            helper.make_node("Add", [p + "f2", p + "b2"], [p + "f2b"], name=p + "b2"),
            helper.make_node("Add", [p + "h1", p + "f2b"], [p + "out"], name=p + "residual2"),
        ]
        current = p + "out"
    inits += [
        numpy_helper.from_array(np.ones(dim, np.float32), "lnf.scale"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "lnf.bias"),
        _init(rng, "head", (dim, vocab), dim**-0.5),
    ]
    nodes += [
        helper.make_node("LayerNormalization", [current, "lnf.scale", "lnf.bias"], ["nf"], name="lnf"),
        helper.make_node("MatMul", ["nf", "head"], ["logits_bsv"], name="head"),
        helper.make_node("Transpose", ["logits_bsv"], ["logits"], name="logits_t", perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "transformer_block",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab, seq])],
        inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", TRANSFORMER_OPSET)], producer_name="onnxgraph"
    )
    model.ir_version = 9
    return model


def fault_chain(nodes: int = 100, fault_at: int = 60, fault: str = "int16_relu", width: int = 8) -> onnx.ModelProto:
    """A chain of ``nodes`` elementwise nodes (Add, Mul, Relu, Tanh) over ``x[2, width]`` with one planted
    fault at position ``fault_at``, for ``reduce``:

    * ``"int16_relu"``: Cast to int16, Relu, Cast back: valid ONNX (Relu-14 takes int16) that onnxruntime
      has no kernel for, so no session can be created; onnx.reference runs it.
    * ``"random"``: Add of RandomUniformLike noise: onnxruntime and onnx.reference draw different numbers.
    """
    made, inits, x = [], [], "x"
    for i in range(nodes):
        out = f"v{i}"
        if i == fault_at and fault == "int16_relu":
            made += [
                helper.make_node("Cast", [x], [f"c{i}"], to=TensorProto.INT16, name=f"to_int16_{i}"),
                helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"fault_{i}"),
                helper.make_node("Cast", [f"r{i}"], [out], to=TensorProto.FLOAT, name=f"to_float_{i}"),
            ]
        elif i == fault_at and fault == "random":
            made += [
                helper.make_node("RandomUniformLike", [x], [f"noise{i}"], seed=1.0, name=f"fault_{i}"),
                helper.make_node("Add", [x, f"noise{i}"], [out], name=f"n{i}"),
            ]
        elif i % 4 in (0, 1):
            inits.append(numpy_helper.from_array(np.full(width, 0.5 + 0.25 * (i % 3), np.float32), f"w{i}"))
            made.append(helper.make_node("Add" if i % 4 == 0 else "Mul", [x, f"w{i}"], [out], name=f"n{i}"))
        else:
            made.append(helper.make_node("Relu" if i % 4 == 2 else "Tanh", [x], [out], name=f"n{i}"))
        x = out
    graph = helper.make_graph(
        made,
        "fault_chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def decomposed_layernorm(dim: int = 16, gain: float = 300.0, seed: int = 0, opset: int = 13) -> onnx.ModelProto:
    """``y = LayerNorm(x @ w) @ w_out`` with the normalization written out as exporters do below opset 17
    (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add), and activations of size about ``gain``:
    the squared deviations pass 65504, so the float16 version of this model overflows in Pow. ``opset``
    sets the default-domain opset (ReduceMean takes its axes as an input from 18 on)."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array((rng.standard_normal((dim, dim)) * gain / dim**0.5).astype(np.float32), "w"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(np.ones(dim, np.float32), "ln.scale"),
        numpy_helper.from_array(np.zeros(dim, np.float32), "ln.bias"),
        _init(rng, "w_out", (dim, dim), dim**-0.5),
    ]
    if opset < 18:
        axes: dict = {"axes": [-1]}
        mean_inputs, var_inputs = ["h"], ["sq"]
    else:
        axes = {}
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "ln.axes"))
        mean_inputs, var_inputs = ["h", "ln.axes"], ["sq", "ln.axes"]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
        helper.make_node("ReduceMean", mean_inputs, ["mean"], name="ln/mean", **axes),
        helper.make_node("Sub", ["h", "mean"], ["dev"], name="ln/sub"),
        helper.make_node("Pow", ["dev", "two"], ["sq"], name="ln/pow"),
        helper.make_node("ReduceMean", var_inputs, ["var"], name="ln/var", **axes),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="ln/add_eps"),
        helper.make_node("Sqrt", ["var_eps"], ["std"], name="ln/sqrt"),
        helper.make_node("Div", ["dev", "std"], ["normed"], name="ln/div"),
        helper.make_node("Mul", ["normed", "ln.scale"], ["scaled"], name="ln/scale"),
        helper.make_node("Add", ["scaled", "ln.bias"], ["ln_out"], name="ln/bias"),
        helper.make_node("MatMul", ["ln_out", "w_out"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "decomposed_layernorm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, dim])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, dim])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8 if opset < 21 else 10)


LLAMA_OPSET = 23
"""RMSNormalization, RotaryEmbedding and Attention joined the default domain in opset 23."""


def llama_block(
    vocab: int = 32, seq: int = 8, dim: int = 16, heads: int = 4, kv_heads: int = 2, ff: int = 32, seed: int = 0
) -> onnx.ModelProto:
    """A llama-style causal block ``ids[batch, seq] -> logits[batch, vocab, seq]`` built from the
    opset-23 ops: RMSNormalization, 3-D RotaryEmbedding on Q and K (position_ids into cos/sin
    caches), one 3-D grouped-query causal Attention (``kv_heads`` < ``heads``), a SiLU-gated MLP,
    residual Adds, a final RMSNormalization and an output projection. (The dynamo exporter writes
    the 4-D Attention form and a hand-written rotary as Slice/Concat: see the golden exports.)"""
    rng = np.random.default_rng(seed)
    head_dim = dim // heads
    angles = np.outer(np.arange(seq), 10000.0 ** (-np.arange(0, head_dim, 2) / head_dim))
    inits = [
        _init(rng, "embed", (vocab, dim), 0.5),
        numpy_helper.from_array(np.cos(angles).astype(np.float32), "rope.cos"),
        numpy_helper.from_array(np.sin(angles).astype(np.float32), "rope.sin"),
        numpy_helper.from_array(np.arange(seq, dtype=np.int64)[None, :], "positions"),
    ]
    for name, shape, scale in (
        ("norm1", (dim,), None),
        ("wq", (dim, dim), dim**-0.5),
        ("wk", (dim, kv_heads * head_dim), dim**-0.5),
        ("wv", (dim, kv_heads * head_dim), dim**-0.5),
        ("wo", (dim, dim), dim**-0.5),
        ("norm2", (dim,), None),
        ("w_gate", (dim, ff), dim**-0.5),
        ("w_up", (dim, ff), dim**-0.5),
        ("w_down", (ff, dim), ff**-0.5),
        ("norm_f", (dim,), None),
        ("head", (dim, vocab), dim**-0.5),
    ):
        value = np.ones(shape, np.float32) if scale is None else (rng.standard_normal(shape) * scale).astype(np.float32)
        inits.append(numpy_helper.from_array(value, name))
    rope_inputs = ["rope.cos", "rope.sin", "position_ids"]
    nodes = [
        helper.make_node("Gather", ["embed", "ids"], ["h0"], name="embed"),
        helper.make_node("Shape", ["ids"], ["ids_shape"], name="ids_shape"),
        helper.make_node("Expand", ["positions", "ids_shape"], ["position_ids"], name="position_ids"),
        helper.make_node("RMSNormalization", ["h0", "norm1"], ["n1"], name="norm1", epsilon=1e-6),
        *[helper.make_node("MatMul", ["n1", w], [w + "_out"], name=w) for w in ("wq", "wk", "wv")],
        helper.make_node("RotaryEmbedding", ["wq_out", *rope_inputs], ["q"], name="rope_q", num_heads=heads),
        helper.make_node("RotaryEmbedding", ["wk_out", *rope_inputs], ["k"], name="rope_k", num_heads=kv_heads),
        helper.make_node(
            "Attention",
            ["q", "k", "wv_out"],
            ["ctx"],
            name="attention",
            is_causal=1,
            q_num_heads=heads,
            kv_num_heads=kv_heads,
        ),
        helper.make_node("MatMul", ["ctx", "wo"], ["proj"], name="wo"),
        helper.make_node("Add", ["h0", "proj"], ["h1"], name="residual1"),
        helper.make_node("RMSNormalization", ["h1", "norm2"], ["n2"], name="norm2", epsilon=1e-6),
        helper.make_node("MatMul", ["n2", "w_gate"], ["gate"], name="w_gate"),
        helper.make_node("Sigmoid", ["gate"], ["gate_sig"], name="silu_sigmoid"),
        helper.make_node("Mul", ["gate", "gate_sig"], ["gate_act"], name="silu"),
        helper.make_node("MatMul", ["n2", "w_up"], ["up"], name="w_up"),
        helper.make_node("Mul", ["gate_act", "up"], ["gated"], name="gated"),
        helper.make_node("MatMul", ["gated", "w_down"], ["down"], name="w_down"),
        helper.make_node("Add", ["h1", "down"], ["h2"], name="residual2"),
        helper.make_node("RMSNormalization", ["h2", "norm_f"], ["nf"], name="norm_f", epsilon=1e-6),
        helper.make_node("MatMul", ["nf", "head"], ["logits_bsv"], name="head"),
        helper.make_node("Transpose", ["logits_bsv"], ["logits"], name="logits_t", perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "llama_block",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", seq])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", vocab, seq])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", LLAMA_OPSET)], producer_name="onnxgraph")
    model.ir_version = 10
    return model


def rnn_classifier(features: int = 3, hidden: int = 4, classes: int = 3, seed: int = 0) -> onnx.ModelProto:
    """A sequence classifier ``x[batch, time, features] -> logits[batch, classes]`` as the TorchScript
    exporter writes ``nn.LSTM(batch_first=True, bidirectional=True)`` followed by ``nn.GRU``:
    Transposes to the time-major layout, a bidirectional LSTM without sequence_lens, its two
    directions merged per step, a GRU (linear_before_reset=1, PyTorch's form) whose last hidden
    state feeds a Gemm. Batch and time are symbolic."""
    rng = np.random.default_rng(seed)
    h = hidden
    inits = [
        _init(rng, "lstm.W", (2, 4 * h, features), h**-0.5),
        _init(rng, "lstm.R", (2, 4 * h, h), h**-0.5),
        _init(rng, "lstm.B", (2, 8 * h), 0.1),
        _init(rng, "gru.W", (1, 3 * h, 2 * h), h**-0.5),
        _init(rng, "gru.R", (1, 3 * h, h), h**-0.5),
        _init(rng, "gru.B", (1, 6 * h), 0.1),
        _init(rng, "fc.weight", (classes, h), h**-0.5),
        _init(rng, "fc.bias", (classes,), 0.1),
        numpy_helper.from_array(np.array([0, 0, 2 * h], np.int64), "merged_shape"),
        numpy_helper.from_array(np.array([0], np.int64), "first_axis"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_tbf"], name="time_major", perm=[1, 0, 2]),
        helper.make_node(
            "LSTM",
            ["x_tbf", "lstm.W", "lstm.R", "lstm.B"],
            ["lstm_y"],
            name="lstm",
            hidden_size=h,
            direction="bidirectional",
        ),
        helper.make_node("Transpose", ["lstm_y"], ["lstm_tbdh"], name="lstm_t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["lstm_tbdh", "merged_shape"], ["lstm_out"], name="merge_directions"),
        helper.make_node(
            "GRU",
            ["lstm_out", "gru.W", "gru.R", "gru.B"],
            ["", "gru_h"],
            name="gru",
            hidden_size=h,
            linear_before_reset=1,
        ),
        helper.make_node("Squeeze", ["gru_h", "first_axis"], ["last"], name="last_state"),
        helper.make_node("Gemm", ["last", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "rnn_classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time", features])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
    model.ir_version = 8
    return model


# -- patterns of real torch.onnx exports that gradient building must handle (tests/autodiff) ----------
EXPORT_PATTERN_OPSET = 17


def _pattern(text: str, weights: dict[str, tuple[int, ...]], seed: int, scale: float = 0.4) -> onnx.ModelProto:
    """A model from onnx text whose ``weights`` become random float32 initializers."""
    model = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {EXPORT_PATTERN_OPSET}]>\n{text}')
    rng = np.random.default_rng(seed)
    model.graph.initializer.extend(_init(rng, name, shape, scale) for name, shape in weights.items())
    return model


def channel_shuffle_cnn(seed: int = 0) -> onnx.ModelProto:
    """ShuffleNet's channel shuffle as the TorchScript exporter writes it, symbolic batch: the
    ``view(b, g, c // g, h, w)`` targets come from Shape/Gather/Div/Concat, so shape inference loses
    the channels the depthwise Conv, AveragePool and pointwise Conv after it see."""
    text = """
    shuffle (float[batch, 3, 8, 8] x) => (float[batch, 3] y) {
        c0 = Conv<kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]>(x, stem_w, stem_b)
        r0 = Relu(c0)
        p0 = MaxPool<kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]>(r0)
        s = Shape(p0)
        i0 = Constant<value=int64 {0}>()
        i1 = Constant<value=int64 {1}>()
        i2 = Constant<value=int64 {2}>()
        i3 = Constant<value=int64 {3}>()
        z = Constant<value=int64[1] {0}>()
        two = Constant<value=int64 {2}>()
        groups = Constant<value=int64[1] {2}>()
        rest = Constant<value=int64[1] {-1}>()
        n0 = Gather<axis=0>(s, i0)
        c = Gather<axis=0>(s, i1)
        h0 = Gather<axis=0>(s, i2)
        w0 = Gather<axis=0>(s, i3)
        cg = Div(c, two)
        n = Unsqueeze(n0, z)
        h = Unsqueeze(h0, z)
        w = Unsqueeze(w0, z)
        per_group = Unsqueeze(cg, z)
        target = Concat<axis=0>(n, groups, per_group, h, w)
        grouped = Reshape(p0, target)
        swapped = Transpose<perm=[0, 2, 1, 3, 4]>(grouped)
        back = Concat<axis=0>(n, rest, h, w)
        u = Reshape(swapped, back)
        d = Conv<kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4>(u, dw_w)
        r1 = Relu(d)
        e = Conv<kernel_shape=[1, 1]>(r1, pw_w, pw_b)
        a = AveragePool<kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]>(e)
        m = ReduceMean<axes=[2, 3], keepdims=0>(a)
        y = Gemm<transB=1>(m, fc_w, fc_b)
    }
    """
    shapes = {
        "stem_w": (4, 3, 3, 3),
        "stem_b": (4,),
        "dw_w": (4, 1, 3, 3),
        "pw_w": (4, 4, 1, 1),
        "pw_b": (4,),
        "fc_w": (3, 4),
        "fc_b": (3,),
    }
    return _pattern(text, shapes, seed)


def audio_frontend(seed: int = 0) -> onnx.ModelProto:
    """wav2vec2's feature encoder in small over raw audio of dynamic length: strided Conv1d layers,
    a ConvTranspose1d, AveragePool (padding not counted) and MaxPool, all over a run-time length."""
    text = """
    audio (float[batch, time] wav) => (float[batch, frames, 3] y) {
        one = Constant<value=int64[1] {1}>()
        x = Unsqueeze(wav, one)
        c0 = Conv<kernel_shape=[5], strides=[3]>(x, c0_w, c0_b)
        r0 = Relu(c0)
        c1 = Conv<kernel_shape=[3], strides=[2], pads=[1, 1]>(r0, c1_w)
        h = Tanh(c1)
        t = ConvTranspose<kernel_shape=[4], strides=[2], pads=[1, 1]>(h, t_w, t_b)
        a = AveragePool<kernel_shape=[3], strides=[2], pads=[1, 1]>(t)
        m = MaxPool<kernel_shape=[2], strides=[2]>(a)
        frames = Transpose<perm=[0, 2, 1]>(m)
        y = MatMul(frames, proj_w)
    }
    """
    shapes = {"c0_w": (4, 1, 5), "c0_b": (4,), "c1_w": (4, 4, 3), "t_w": (4, 2, 4), "t_b": (2,), "proj_w": (2, 3)}
    return _pattern(text, shapes, seed)


def vit_squeeze_chain(seed: int = 0) -> onnx.ModelProto:
    """A ViT head whose class token goes through Unsqueeze/Squeeze with axes computed from the rank
    (``Size(Shape(x)) - 2``), which onnx shape inference cannot follow: the rank of everything after
    is unknown to it (onnxruntime's symbolic shape inference recovers it)."""
    text = """
    vit (float[batch, tokens, 4] x) => (float[batch, 3] y) {
        two = Constant<value=int64 {2}>()
        zero = Constant<value=int64 {0}>()
        z = Constant<value=int64[1] {0}>()
        s = Shape(x)
        rank = Size(s)
        axis = Sub(rank, two)
        axes = Unsqueeze(axis, z)
        token = Gather<axis=1>(x, zero)
        lifted = Unsqueeze(token, axes)
        normed = LayerNormalization<axis=-1>(lifted, ln_w, ln_b)
        f = MatMul(normed, fc_w)
        h = Tanh(f)
        o = MatMul(h, head_w)
        y = Squeeze(o, axes)
    }
    """
    return _pattern(text, {"ln_w": (4,), "ln_b": (4,), "fc_w": (4, 4), "head_w": (4, 3)}, seed)


def token_type_expand(seed: int = 0) -> onnx.ModelProto:
    """BERT's token-type ids as the TorchScript exporter writes them: a registered buffer sliced to
    the sequence and expanded to ``(batch, sequence)`` through a ``Where(Equal(shape, -1), 1, shape)``
    target, which onnx shape inference cannot follow even with every input dimension fixed (the
    batch of everything after it is lost); onnxruntime's symbolic inference recovers it, given the
    large weights (the 1100-wide projection, exported without data) as typed inputs."""
    text = """
    tokens (float[batch, sequence, 8] x) => (float[batch, sequence, 1100] y) {
        zero = Constant<value=int64 {0}>()
        one = Constant<value=int64 {1}>()
        z = Constant<value=int64[1] {0}>()
        o = Constant<value=int64[1] {1}>()
        minus = Constant<value=int64 {-1}>()
        buffer_shape = Constant<value=int64[2] {1, 512}>()
        buffer = ConstantOfShape<value=int64[1] {0}>(buffer_shape)
        s = Shape(x)
        b = Gather<axis=0>(s, zero)
        n = Gather<axis=0>(s, one)
        bu = Unsqueeze(b, z)
        nu = Unsqueeze(n, z)
        sliced = Slice(buffer, z, nu, o, o)
        target = Concat<axis=0>(bu, nu)
        rank = Shape(target)
        ones = ConstantOfShape<value=int64[1] {1}>(rank)
        unset = Mul(ones, minus)
        is_unset = Equal(target, unset)
        expand_to = Where(is_unset, ones, target)
        token_types = Expand(sliced, expand_to)
        embedded = Gather(table, token_types)
        h = Add(x, embedded)
        projected = MatMul(h, proj_w)
        y = Add(projected, proj_b)
    }
    """
    return _pattern(text, {"table": (2, 8), "proj_w": (8, 1100), "proj_b": (1100,)}, seed)


def interpolate(seed: int = 0) -> onnx.ModelProto:
    """``F.interpolate`` as the TorchScript exporter writes it, symbolic batch: nearest with a
    Constant-node scale factor, and bilinear to sizes built as ``Concat(Shape(x)[:2], [h, w])``."""
    text = """
    interp (float[batch, 2, 3, 3] x) => (float[batch, 2, 5, 5] y) {
        scales = Constant<value=float[4] {1, 1, 2, 2}>()
        z = Constant<value=int64[1] {0}>()
        two = Constant<value=int64[1] {2}>()
        hw = Constant<value=int64[2] {5, 5}>()
        a = Conv<kernel_shape=[3, 3], pads=[1, 1, 1, 1]>(x, c0_w)
        up = Resize<mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor">(a, , scales)
        s = Shape(up)
        lead = Slice(s, z, two, z)
        sizes = Concat<axis=0>(lead, hw)
        down = Resize<mode="linear">(up, , , sizes)
        y = Conv<kernel_shape=[1, 1]>(down, c1_w)
    }
    """
    return _pattern(text, {"c0_w": (2, 2, 3, 3), "c1_w": (2, 2, 1, 1)}, seed)


def layernorm_dedup(seed: int = 0) -> onnx.ModelProto:
    """Two LayerNorms whose equal parameters the TorchScript exporter deduplicated: the second reads
    ``Identity(ln1_weight)`` and ``Identity(ln1_bias)``, named ``ln2_weight`` and ``ln2_bias``."""
    text = """
    dedup (float[batch, 4] x) => (float[batch, 3] y) {
        ln2_weight = Identity(ln1_weight)
        ln2_bias = Identity(ln1_bias)
        f0 = Gemm<transB=1>(x, fc0_w)
        a = LayerNormalization<axis=-1>(f0, ln1_weight, ln1_bias)
        t = Tanh(a)
        f1 = Gemm<transB=1>(t, fc1_w)
        b = LayerNormalization<axis=-1>(f1, ln2_weight, ln2_bias)
        y = Gemm<transB=1>(b, fc2_w)
    }
    """
    model = _pattern(text, {"fc0_w": (4, 4), "fc1_w": (4, 4), "fc2_w": (3, 4)}, seed)
    rng = np.random.default_rng(seed + 1)
    model.graph.initializer.extend([_init(rng, "ln1_weight", (4,), 0.3), _init(rng, "ln1_bias", (4,), 0.3)])
    return model


def if_branches(seed: int = 0) -> onnx.ModelProto:
    """An If on a run-time condition (the sign of the input's sum) whose branches both use the
    parameters, as exporters write data-dependent control flow (``torch.cond``)."""
    text = """
    cond (float[batch, 3] x) => (float[batch, 3] y) {
        zero = Constant<value=float {0.0}>()
        h = MatMul(x, w)
        total = ReduceSum<keepdims=0>(x)
        c = Greater(total, zero)
        y = If(c) <
            then_branch = then_g () => (float[batch, 3] t) { th = Tanh(h)  t = Mul(th, v) },
            else_branch = else_g () => (float[batch, 3] e) { hh = Mul(h, h)  e = Add(hh, v) }
        >
    }
    """
    return _pattern(text, {"w": (3, 3), "v": (3,)}, seed)


def rms_norm_export(hidden: int = 64, scale: float = 4e-3, seed: int = 0) -> onnx.ModelProto:
    """Hugging Face's RMSNorm (Llama, Qwen2, Mistral) as the TorchScript exporter writes it at opset 17:
    ``Cast(to=float)``, ``Pow(x, 2)``, ``ReduceMean``, ``Add(eps)``, ``Sqrt``, ``Div(1, .)``, ``Mul``,
    ``Cast(to=float)``, ``Mul(weight)`` (both Casts are no-ops in float32: they are the module's
    ``.to(torch.float32)`` and ``.to(input_dtype)``), between two projections. The hidden states
    entering the norm have a standard deviation of about ``scale`` (a randomly initialised decoder's
    are a few thousandths): their squares are float16 subnormals."""
    text = """
    rms (float[batch, seq, H] x) => (float[batch, seq, H] y) {
        h = MatMul(x, w_in)
        f = Cast<to=1>(h)
        two = Constant<value=float {2.0}>()
        sq = Pow(f, two)
        ms = ReduceMean<axes=[-1], keepdims=1>(sq)
        eps = Constant<value=float {1e-6}>()
        v = Add(ms, eps)
        s = Sqrt(v)
        one = Constant<value=float {1.0}>()
        r = Div(one, s)
        n = Mul(f, r)
        c = Cast<to=1>(n)
        g = Mul(norm_w, c)
        y = MatMul(g, w_out)
    }
    """.replace("H", str(hidden))
    model = _pattern(text, {"w_out": (hidden, hidden)}, seed, scale=hidden**-0.5)
    rng = np.random.default_rng(seed + 1)
    norm_w = numpy_helper.from_array((1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32), "norm_w")
    model.graph.initializer.extend([_init(rng, "w_in", (hidden, hidden), scale * hidden**-0.5), norm_w])
    return model


def multihead_attention_export(tokens: int = 5, hidden: int = 8, heads: int = 2, seed: int = 0) -> onnx.ModelProto:
    """``nn.MultiheadAttention`` (torchvision's ViT encoder) as the TorchScript exporter writes it, with
    a symbolic batch: tokens-first Transpose, one packed in-projection whose result is split into Q, K
    and V by a Reshape to ``shape[:2] + [3, E] + shape[3:]``, where the slice bounds come from
    ``Mod(2, 3)`` (a constant computation neither onnx's data propagation nor onnxruntime's symbolic
    inference evaluates, so the Reshape's target has unknown length), then Unsqueeze/Transpose/Squeeze
    and Gather, per-head Reshapes with the head size computed as ``Cast(Cast(Div(E, heads)))``, the
    scale as ``Sqrt(1 / Sqrt(head size))`` on both operands, and the out-projection as a Gemm over
    ``(tokens · batch, E)``. Weights: ``in_w`` (E, 3E) and ``in_b``, ``out_w`` (E, E, transposed) and
    ``out_b``."""
    text = """
    mha (float[batch, T, E] x) => (float[batch, T, E] y) {
        c0 = Constant<value=int64 {0}>()
        c1 = Constant<value=int64 {1}>()
        c2 = Constant<value=int64 {2}>()
        nheads = Constant<value=int64 {H}>()
        ax0 = Constant<value=int64[1] {0}>()
        ax3 = Constant<value=int64[1] {3}>()
        one = Constant<value=int64[1] {1}>()
        last = Constant<value=int64[1] {-1}>()
        end = Constant<value=int64[1] {9223372036854775807}>()
        three = Constant<value=int64[1] {3}>()
        dim = Constant<value=int64[1] {2}>()
        rank = Constant<value=int64[1] {3}>()
        heads1 = Constant<value=int64[1] {H}>()
        tokens1 = Constant<value=int64[1] {T}>()
        onef = Constant<value=float[1] {1.0}>()
        t = Transpose<perm=[1, 0, 2]>(x)
        st = Shape(t)
        tgt_len = Gather<axis=0>(st, c0)
        bsz = Gather<axis=0>(st, c1)
        embed = Gather<axis=0>(st, c2)
        hd_div = Div(embed, nheads)
        hd_cast = Cast<to=7>(hd_div)
        head_dim = Cast<to=7>(hd_cast)
        e_slice = Slice(st, last, end, ax0)
        e = Squeeze(e_slice, ax0)
        proj = MatMul(t, in_w)
        qkv = Add(in_b, proj)
        e1 = Unsqueeze(e, ax0)
        unflattened = Concat<axis=0>(three, e1)
        at = Mod(dim, rank)
        sq = Shape(qkv)
        at1 = Reshape(at, one)
        lead = Slice(sq, ax0, at1)
        after = Add(at, one)
        after1 = Reshape(after, one)
        trail = Slice(sq, after1, end)
        split_shape = Concat<axis=0>(lead, unflattened, trail)
        split = Reshape(qkv, split_shape)
        lifted = Unsqueeze(split, ax0)
        moved = Transpose<perm=[3, 1, 2, 0, 4]>(lifted)
        packed = Squeeze(moved, ax3)
        q0 = Gather<axis=0>(packed, c0)
        k0 = Gather<axis=0>(packed, c1)
        v0 = Gather<axis=0>(packed, c2)
        bh = Mul(bsz, nheads)
        tgt1 = Unsqueeze(tgt_len, ax0)
        bh1 = Unsqueeze(bh, ax0)
        hd1 = Unsqueeze(head_dim, ax0)
        q_shape = Concat<axis=0>(tgt1, bh1, hd1)
        kv_shape = Concat<axis=0>(tokens1, bh1, hd1)
        q1 = Reshape(q0, q_shape)
        q2 = Transpose<perm=[1, 0, 2]>(q1)
        k1 = Reshape(k0, kv_shape)
        k2 = Transpose<perm=[1, 0, 2]>(k1)
        v1 = Reshape(v0, kv_shape)
        v2 = Transpose<perm=[1, 0, 2]>(v1)
        sk = Shape(k2)
        src_len = Gather<axis=0>(sk, c1)
        bsz1 = Unsqueeze(bsz, ax0)
        src1 = Unsqueeze(src_len, ax0)
        q4_shape = Concat<axis=0>(bsz1, heads1, tgt1, hd1)
        kv4_shape = Concat<axis=0>(bsz1, heads1, src1, hd1)
        q4 = Reshape(q2, q4_shape)
        k4 = Reshape(k2, kv4_shape)
        v4 = Reshape(v2, kv4_shape)
        sq4 = Shape(q4)
        hd_last = Slice(sq4, last, end)
        hd_float = Cast<to=1>(hd_last)
        root = Sqrt(hd_float)
        inv = Div(onef, root)
        scale = Cast<to=1>(inv)
        kt = Transpose<perm=[0, 1, 3, 2]>(k4)
        q_scale = Sqrt(scale)
        q_scaled = Mul(q4, q_scale)
        k_scale = Sqrt(scale)
        k_scaled = Mul(kt, k_scale)
        scores = MatMul(q_scaled, k_scaled)
        p = Softmax<axis=-1>(scores)
        ctx = MatMul(p, v4)
        ctx_t = Transpose<perm=[2, 0, 1, 3]>(ctx)
        rows = Mul(bsz, tgt_len)
        rows1 = Unsqueeze(rows, ax0)
        embed1 = Unsqueeze(embed, ax0)
        flat_shape = Concat<axis=0>(rows1, embed1)
        flat = Reshape(ctx_t, flat_shape)
        o = Gemm<alpha=1.0, beta=1.0, transB=1>(flat, out_w, out_b)
        so = Shape(o)
        oe = Gather<axis=0>(so, c1)
        oe1 = Unsqueeze(oe, ax0)
        back_shape = Concat<axis=0>(tgt1, bsz1, oe1)
        back = Reshape(o, back_shape)
        y = Transpose<perm=[1, 0, 2]>(back)
    }
    """
    text = text.replace("[batch, T, E]", f"[batch, {tokens}, {hidden}]")
    text = text.replace("{T}", f"{{{tokens}}}").replace("{H}", f"{{{heads}}}")
    weights = {"in_w": (hidden, 3 * hidden), "in_b": (3 * hidden,), "out_w": (hidden, hidden), "out_b": (hidden,)}
    return _pattern(text, weights, seed)


# ---- Graphs of N nodes for the scaling benchmark (benchmarks/scaling.py) and linear-work tests ----------


def relu_chain(n: int) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", [f"h{i}"], [f"h{i + 1}" if i + 1 < n else "y"]) for i in range(n)]
    nodes[0].input[0] = "x"
    return _scaling_model(nodes, [])


def add_chain(n: int) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.full(4, 0.001 * (i % 7), np.float32), f"b{i}") for i in range(n)]
    nodes = [helper.make_node("Add", [f"h{i}", f"b{i}"], [f"h{i + 1}" if i + 1 < n else "y"]) for i in range(n)]
    nodes[0].input[0] = "x"
    return _scaling_model(nodes, inits)


def wide_sum(n: int) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], [f"r{i}"]) for i in range(n)]
    nodes.append(helper.make_node("Sum", [f"r{i}" for i in range(n)], ["y"]))
    return _scaling_model(nodes, [])


def many_initializers(n: int) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.full((4, 4), 0.01 * (i % 5), np.float32), f"w{i}") for i in range(n)]
    nodes = [helper.make_node("MatMul", ["x2", f"w{i}"], [f"m{i}"]) for i in range(n)]
    nodes.insert(0, helper.make_node("Reshape", ["x", "shape"], ["x2"]))
    inits.append(numpy_helper.from_array(np.array([1, 4], np.int64), "shape"))
    nodes.append(helper.make_node("Sum", [f"m{i}" for i in range(n)], ["s"]))
    nodes.append(helper.make_node("Reshape", ["s", "back"], ["y"]))
    inits.append(numpy_helper.from_array(np.array([4], np.int64), "back"))
    return _scaling_model(nodes, inits)


def _scaling_model(nodes, inits) -> onnx.ModelProto:
    """One input ``x`` and one output ``y``, both float[4]."""
    graph = helper.make_graph(
        nodes,
        "scaling",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


EXPORT_PATTERNS = {
    "channel_shuffle_cnn": channel_shuffle_cnn,
    "audio_frontend": audio_frontend,
    "vit_squeeze_chain": vit_squeeze_chain,
    "interpolate": interpolate,
    "layernorm_dedup": layernorm_dedup,
    "if_branches": if_branches,
}
"""Name -> builder of each export pattern the gradient tests reproduce (not bundled as files)."""


BUNDLED = {
    "mlp.onnx": mlp,
    "cnn.onnx": cnn,
    "transformer.onnx": transformer,
    "transformer_block.onnx": transformer_block,
}
"""File name -> builder of every model committed in models/."""


def main() -> None:
    for name, build in BUNDLED.items():
        onnx.save(build(), os.path.join(HERE, name))
        print(f"wrote models/{name}")


if __name__ == "__main__":
    main()
