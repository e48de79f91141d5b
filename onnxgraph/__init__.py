"""onnxgraph: an ONNX toolkit built on one internal graph (IR).

>>> import onnxgraph
>>> model = onnxgraph.load("model.onnx")          # doctest: +SKIP
>>> onnxgraph.save(model, "copy.onnx")             # doctest: +SKIP
"""

from __future__ import annotations

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

__version__ = "0.1.0"

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
