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
        shape = self.op("Concat", [self.dim(x, 0), self.dim(x, 1), self.const(np.array([n_heads], np.int64)),
                                   self.const(np.array([head_dim], np.int64))], axis=0)
        return self.op("Transpose", [self.op("Reshape", [x, shape])], perm=[0, 2, 1, 3])


def transformer(layers: int = 2, hidden: int = 32, heads: int = 4, vocab: int = 100, max_positions: int = 64,
                seed: int = 0) -> onnx.ModelProto:
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
    position_ids = g.op("Unsqueeze", [g.op("Range", [g.const(np.array(0, np.int64)), seq,
                                                      g.const(np.array(1, np.int64))]),
                                      g.const(np.array([0], np.int64))])
    x = g.op("Add", [g.op("Gather", [words, "input_ids"]), g.op("Gather", [positions, position_ids])])
    x = g.layer_norm(x, "embeddings.LayerNorm", hidden)
    mask = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const(np.array([1, 2], np.int64))])],
                to=TensorProto.FLOAT)
    mask = g.op("Mul", [g.op("Sub", [g.const(np.array(1.0, np.float32)), mask]),
                        g.const(np.array(-10000.0, np.float32))])
    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = g.heads(g.linear(x, f"{p}.attention.self.query", hidden, hidden), heads, head_dim)
        k = g.heads(g.linear(x, f"{p}.attention.self.key", hidden, hidden), heads, head_dim)
        v = g.heads(g.linear(x, f"{p}.attention.self.value", hidden, hidden), heads, head_dim)
        scores = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = g.op("Add", [g.op("Div", [scores, g.const(np.array(head_dim**0.5, np.float32))]), mask])
        context = g.op("Transpose", [g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])], perm=[0, 2, 1, 3])
        merged = g.op("Concat", [g.dim(context, 0), g.dim(context, 1), g.const(np.array([hidden], np.int64))],
                      axis=0)
        attention = g.linear(g.op("Reshape", [context, merged]), f"{p}.attention.output.dense", hidden, hidden)
        attention = g.op("Dropout", [attention, g.const(np.array(0.1, np.float32))])
        x = g.layer_norm(g.op("Add", [attention, x]), f"{p}.attention.output.LayerNorm", hidden)
        h = g.linear(x, f"{p}.intermediate.dense", hidden, 4 * hidden)
        erf = g.op("Erf", [g.op("Div", [h, g.const(np.array(2.0**0.5, np.float32))])])
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [erf, g.const(np.array(1.0, np.float32))])]),
                         g.const(np.array(0.5, np.float32))])
        h = g.linear(h, f"{p}.output.dense", 4 * hidden, hidden)
        x = g.layer_norm(g.op("Add", [h, x]), f"{p}.output.LayerNorm", hidden)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="/output/Identity"))
    graph = helper.make_graph(
        g.nodes,
        "transformer",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
    model.ir_version = 8
    return model


BUNDLED = {"mlp.onnx": mlp, "transformer.onnx": transformer}
"""File name -> builder of every model committed in models/."""


def main() -> None:
    for name, build in BUNDLED.items():
        onnx.save(build(), os.path.join(HERE, name))
        print(f"wrote models/{name}")


if __name__ == "__main__":
    main()
