"""Whether the installed onnxruntime runs a standard op: a one-node session, probed once per process.

A fusion into a newer standard op (LayerNormalization, Gelu, RMSNormalization, Attention) is only
worth making when the runtime that will run the model implements that op at the model's opset;
otherwise the fused model would not load. :func:`ort_implements` builds a one-node float32 model
of the op, creates an onnxruntime CPU session and runs it once; the answer is cached per
``(op, opset)``. Without onnxruntime installed every probe answers False.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from onnx import TensorProto, helper

from onnxgraph.optimizers.rewriter.rule import Failure, RewriteContext, fail

# op -> (inputs as (name, shape, dtype), attributes) of a small valid node
_SAMPLES: dict[str, tuple[list[tuple[str, list[int], int]], dict[str, Any]]] = {
    "LayerNormalization": ([("x", [2, 4], TensorProto.FLOAT), ("scale", [4], TensorProto.FLOAT)], {}),
    "Gelu": ([("x", [2, 4], TensorProto.FLOAT)], {}),
    "RMSNormalization": ([("x", [2, 4], TensorProto.FLOAT), ("scale", [4], TensorProto.FLOAT)], {}),
    "Attention": (
        [
            ("q", [1, 2, 3, 4], TensorProto.FLOAT),
            ("k", [1, 2, 3, 4], TensorProto.FLOAT),
            ("v", [1, 2, 3, 4], TensorProto.FLOAT),
            ("mask", [3, 3], TensorProto.FLOAT),
        ],
        {},
    ),
    "RotaryEmbedding": (
        [
            ("x", [1, 2, 3, 4], TensorProto.FLOAT),
            ("cos", [1, 3, 2], TensorProto.FLOAT),
            ("sin", [1, 3, 2], TensorProto.FLOAT),
        ],
        {},
    ),
}

FIRST_OPSET = {"LayerNormalization": 17, "Gelu": 20, "RMSNormalization": 23, "Attention": 23, "RotaryEmbedding": 23}
"""The default-domain opset in which each fused op first appears."""


@functools.cache
def ort_implements(op_type: str, opset: int) -> bool:
    """Whether onnxruntime's CPU provider creates and runs a float32 ``op_type`` node at ``opset``.

    Args:
        op_type: a default-domain op listed in :data:`FIRST_OPSET`.
        opset: the default-domain opset version of the model to rewrite.
    """
    try:
        import onnxruntime
    except ImportError:
        return False
    inputs, attributes = _SAMPLES[op_type]
    node = helper.make_node(op_type, [name for name, _, _ in inputs], ["y"], **attributes)
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info(name, dtype, shape) for name, shape, dtype in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
    feeds = {name: np.ones(shape, helper.tensor_dtype_to_np_dtype(dtype)) for name, shape, dtype in inputs}
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, feeds)
    except Exception:  # noqa: BLE001 - any refusal (unknown op, no kernel, bad opset) means "no"
        return False
    return True


def standard_op_available(ctx: RewriteContext, op_type: str) -> Failure | None:
    """A check step: fail unless the scope's opset has ``op_type`` and onnxruntime implements it there."""
    assert ctx.scope is not None
    opset = ctx.scope.opset
    if opset < FIRST_OPSET[op_type]:
        return fail(f"{op_type} needs opset {FIRST_OPSET[op_type]}, the model has {opset}")
    if not ort_implements(op_type, opset):
        return fail(f"the installed onnxruntime does not implement {op_type} at opset {opset}")
    return None
