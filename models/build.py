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


BUNDLED = {"mlp.onnx": mlp}
"""File name -> builder of every model committed in models/."""


def main() -> None:
    for name, build in BUNDLED.items():
        onnx.save(build(), os.path.join(HERE, name))
        print(f"wrote models/{name}")


if __name__ == "__main__":
    main()
