"""onnxgraph: an ONNX toolkit built on one internal graph (IR).

>>> import onnxgraph
>>> model = onnxgraph.load("model.onnx")          # doctest: +SKIP
>>> onnxgraph.save(model, "copy.onnx")             # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``import onnxgraph.cli`` does not load numpy
and onnx: the command line starts fast and has its signal handlers in place before the heavy imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Attribute": "onnxgraph.attribute",
    "AttrType": "onnxgraph.attribute",
    "Function": "onnxgraph.function",
    "Graph": "onnxgraph.graph",
    "GraphError": "onnxgraph.errors",
    "InternalError": "onnxgraph.errors",
    "MalformedGraphError": "onnxgraph.errors",
    "Model": "onnxgraph.model",
    "ModelLoadError": "onnxgraph.errors",
    "ModelSaveError": "onnxgraph.errors",
    "Node": "onnxgraph.node",
    "OnnxGraphError": "onnxgraph.errors",
    "SparseTensor": "onnxgraph.tensor",
    "Tensor": "onnxgraph.tensor",
    "Value": "onnxgraph.value",
    "from_proto": "onnxgraph.serde.fileio",
    "load": "onnxgraph.serde.fileio",
    "save": "onnxgraph.serde.fileio",
}

__all__ = [
    "Attribute",
    "AttrType",
    "Function",
    "Graph",
    "GraphError",
    "InternalError",
    "MalformedGraphError",
    "Model",
    "ModelLoadError",
    "ModelSaveError",
    "Node",
    "OnnxGraphError",
    "SparseTensor",
    "Tensor",
    "Value",
    "from_proto",
    "load",
    "save",
]


def __getattr__(name: str) -> Any:
    """Import an exported name, or a submodule (``onnxgraph.types``), on first use."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:
    from onnxgraph.attribute import Attribute, AttrType
    from onnxgraph.errors import (
        GraphError,
        InternalError,
        MalformedGraphError,
        ModelLoadError,
        ModelSaveError,
        OnnxGraphError,
    )
    from onnxgraph.function import Function
    from onnxgraph.graph import Graph
    from onnxgraph.model import Model
    from onnxgraph.node import Node
    from onnxgraph.serde.fileio import from_proto, load, save
    from onnxgraph.tensor import SparseTensor, Tensor
    from onnxgraph.value import Value
