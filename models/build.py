"""Builders of the small sample models bundled in models/.

Run ``python models/build.py`` to regenerate the ``.onnx`` files; a test checks that the committed
files are what these builders produce.
"""

from __future__ import annotations

import os

import numpy as np
import onnx
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
    layers: int = 2, hidden: int = 32, heads: int = 4, vocab: int = 100, max_positions: int = 64, seed: int = 0
) -> onnx.ModelProto:
    """An encoder (BERT-shaped) as torch.onnx exports it, with symbolic ``batch`` and ``sequence``.

    ``input_ids[batch, sequence]`` and ``attention_mask[batch, sequence]`` (int64) give
    ``last_hidden_state[batch, sequence, hidden]``. The graph carries the exporter's clutter:
    Shape->Gather->Unsqueeze->Concat->Reshape chains, Constant nodes for every literal, Identity
    on weights and inference Dropout. ``transformer(12, 768, 12, 30522, 512)`` is BERT-base sized
    (about 110M parameters and 1,200 nodes).
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
        erf = g.op("Erf", [g.op("Div", [h, g.const(np.array(2.0**0.5, np.float32))])])
        h = g.op(
            "Mul",
            [
                g.op("Mul", [h, g.op("Add", [erf, g.const(np.array(1.0, np.float32))])]),
                g.const(np.array(0.5, np.float32)),
            ],
        )
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
