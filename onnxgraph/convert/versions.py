"""Which IR version and opset each onnxruntime release loads, and what each IR version can hold."""

from __future__ import annotations

import onnx

from onnxgraph.errors import OnnxGraphError

ORT_SUPPORT: dict[tuple[int, int], tuple[int, int]] = {
    # onnxruntime (major, minor) -> (highest IR version, highest ai.onnx opset) it loads.
    # After onnxruntime's docs/Versioning.md compatibility matrix (the ONNX release each runtime was
    # built with; its IR version from onnx's own version table), except 1.31: measured on the
    # installed onnxruntime-gpu 1.31.1 (IR 14 and opset 27 are refused; tests/convert checks it).
    (1, 0): (6, 11),
    (1, 3): (7, 12),
    (1, 6): (7, 13),
    (1, 8): (7, 14),
    (1, 9): (8, 15),
    (1, 11): (8, 16),
    (1, 12): (8, 17),
    (1, 14): (8, 18),
    (1, 15): (9, 19),
    (1, 17): (9, 20),
    (1, 18): (10, 21),
    (1, 21): (10, 22),
    (1, 31): (13, 26),
}
"""A release missing from the table gets the entry of the newest listed release before it
(conservative: newer runtimes load everything older ones do)."""

IR_NEEDED_BY_TYPE: dict[int, int] = {
    onnx.TensorProto.BFLOAT16: 4,
    **{getattr(onnx.TensorProto, n): 9 for n in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ")},
    onnx.TensorProto.INT4: 10,
    onnx.TensorProto.UINT4: 10,
    **({onnx.TensorProto.FLOAT4E2M1: 11} if hasattr(onnx.TensorProto, "FLOAT4E2M1") else {}),
}
"""The first IR version with each newer element type."""


def parse_version(text: str) -> tuple[int, int]:
    """``"1.31"`` or ``"1.31.1"`` -> ``(1, 31)``.

    Raises:
        OnnxGraphError: not a version number.
    """
    parts = text.strip().split(".")
    try:
        if len(parts) < 2 or len(parts) > 3:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise OnnxGraphError(f"'{text}' is not an onnxruntime version such as 1.31") from None


def ort_limits(version: str) -> tuple[int, int]:
    """(highest IR version, highest opset) that onnxruntime ``version`` loads.

    Raises:
        OnnxGraphError: the version is malformed or older than every table entry.
    """
    wanted = parse_version(version)
    known = [v for v in ORT_SUPPORT if v <= wanted]
    if not known:
        oldest = ".".join(map(str, min(ORT_SUPPORT)))
        raise OnnxGraphError(f"onnxruntime {version} is older than the oldest supported target ({oldest})")
    return ORT_SUPPORT[max(known)]


def min_ir_for_opset(opset: int) -> int:
    """The oldest IR version that allows the default-domain ``opset``."""
    for _release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return ir
    return onnx.IR_VERSION


def min_ir_for_types(elem_types: set[int]) -> int:
    """The oldest IR version that has every element type in ``elem_types``."""
    return max((IR_NEEDED_BY_TYPE.get(t, 3) for t in elem_types), default=3)
