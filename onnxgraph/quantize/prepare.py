"""Model fixes that onnxruntime's quantizer needs before it runs, applied to the IR."""

from __future__ import annotations

from onnxgraph.model import Model
from onnxgraph.tensor import Tensor


def untie_gemm_weights(model: Model) -> int:
    """Give every Gemm whose weight B is read by other nodes too a private copy of that weight.

    onnxruntime's dynamic quantizer turns ``Gemm(A, B, C, transB=1)`` into MatMul + Add by
    transposing the initializer B in place, assuming no other node reads it
    (``ONNXModel.replace_gemm_with_matmul``). A weight shared by two Gemms is then transposed twice,
    and one shared with any other node is transposed under it: the quantized model computes
    something else. Shared weights are common: tied parameters, deep-copied layers, and identical
    initializers that optimization merged.

    Returns:
        How many copies were made.
    """
    copies = 0
    for node in list(model.all_nodes()):
        if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 2:
            continue
        weight = node.inputs[1]
        if weight is None or not weight.is_initializer() or len(weight.uses()) < 2:
            continue
        data, graph = weight.const_value, weight.graph
        if not isinstance(data, Tensor) or graph is None:  # a sparse initializer: the quantizer leaves it alone
            continue
        copy = graph.make_initializer(Tensor(data.numpy()), weight.name or "const")
        node.replace_input_with(1, copy)
        copies += 1
    return copies
