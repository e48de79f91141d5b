"""Element types and shapes: small helpers over onnx.TypeProto and TensorProto data types."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import helper

Dim = int | str | None
"""One dimension: a fixed size, a symbolic name, or None when unknown."""

_FOUR_BIT = {
    onnx.TensorProto.INT4,
    onnx.TensorProto.UINT4,
    *([onnx.TensorProto.FLOAT4E2M1] if hasattr(onnx.TensorProto, "FLOAT4E2M1") else []),
}
_TWO_BIT = {getattr(onnx.TensorProto, n) for n in ("INT2", "UINT2") if hasattr(onnx.TensorProto, n)}
_SIX_BIT = {getattr(onnx.TensorProto, n) for n in ("FLOAT6E2M3", "FLOAT6E3M2") if hasattr(onnx.TensorProto, n)}

FLOAT_TYPES = frozenset(getattr(onnx.TensorProto, n) for n in ("FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16"))


def dtype_name(elem_type: int) -> str:
    """``TensorProto.FLOAT`` -> ``"float32"`` style names used in reports."""
    if elem_type == onnx.TensorProto.STRING:
        return "string"
    try:
        return str(helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError, TypeError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def np_dtype(elem_type: int) -> np.dtype:
    """The numpy dtype of an ONNX element type (ml_dtypes types for float16 variants and 4-bit types)."""
    return helper.tensor_dtype_to_np_dtype(elem_type)


def elem_type_of(dtype: np.dtype) -> int:
    """The ONNX element type of a numpy dtype."""
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def is_known(elem_type: int) -> bool:
    """True for an element type this onnx version defines and numpy can hold (not UNDEFINED)."""
    if elem_type == onnx.TensorProto.STRING:
        return True
    try:
        np_dtype(elem_type)
    except (KeyError, ValueError, TypeError):
        return False
    return True


def static_dims(shape: Sequence[Dim] | None) -> tuple[int, ...] | None:
    """``shape`` as integers when its rank and every dimension are known, else None."""
    if shape is None:
        return None
    known = tuple(d for d in shape if isinstance(d, int))
    return known if len(known) == len(shape) else None


def storage_bytes(elem_type: int, num_elements: int) -> int | None:
    """Bytes that ``num_elements`` of ``elem_type`` take in raw_data; None for strings."""
    if elem_type == onnx.TensorProto.STRING:
        return None
    if elem_type in _FOUR_BIT:
        return (num_elements + 1) // 2
    if elem_type in _TWO_BIT:
        return (num_elements + 3) // 4
    if elem_type in _SIX_BIT:
        return (num_elements * 6 + 7) // 8
    return num_elements * np_dtype(elem_type).itemsize


def is_packed(elem_type: int) -> bool:
    """True for sub-byte types whose raw bytes hold several elements each."""
    return elem_type in _FOUR_BIT or elem_type in _TWO_BIT or elem_type in _SIX_BIT


def shape_of(type_proto: onnx.TypeProto | None) -> tuple[Dim, ...] | None:
    """Dimensions of a tensor type (int, symbolic name, or None), or None when the rank is unknown."""
    if type_proto is None or type_proto.WhichOneof("value") not in ("tensor_type", "sparse_tensor_type"):
        return None
    tensor = getattr(type_proto, type_proto.WhichOneof("value"))
    if not tensor.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in tensor.shape.dim:
        kind = d.WhichOneof("value")
        dims.append(d.dim_value if kind == "dim_value" else d.dim_param if kind == "dim_param" else None)
    return tuple(dims)


def elem_type_from(type_proto: onnx.TypeProto | None) -> int | None:
    """Element type of a tensor type, or None for other types and unknown ones."""
    if type_proto is None:
        return None
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        return getattr(type_proto, kind).elem_type or None
    return None


def describe_type(type_proto: onnx.TypeProto | None) -> str:
    """A short human-readable type: ``float32[batch,3,224,224]``, ``seq(float32[?])``, ``map(int64,...)``."""
    if type_proto is None:
        return "?"
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        t = getattr(type_proto, kind)
        name = dtype_name(t.elem_type) if t.elem_type else "?"
        shape = shape_of(type_proto)
        dims = "" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
        return ("sparse " if kind == "sparse_tensor_type" else "") + name + dims
    if kind == "sequence_type":
        return f"seq({describe_type(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({describe_type(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        key = dtype_name(type_proto.map_type.key_type)
        return f"map({key},{describe_type(type_proto.map_type.value_type)})"
    return "?"


def tensor_type(elem_type: int, shape: tuple[Dim, ...] | None) -> onnx.TypeProto:
    """Build a tensor TypeProto."""
    return helper.make_tensor_type_proto(elem_type, shape)
