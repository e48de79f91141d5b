"""The Model: a main graph, model-local functions and model-level metadata."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from onnxgraph.function import Function
from onnxgraph.graph import Graph

if TYPE_CHECKING:
    import onnx

    from onnxgraph.node import Node
    from onnxgraph.tensor import MappedFile


class Model:
    """An ONNX model in the IR.

    ``training_info`` is kept opaque (as TrainingInfoProto messages); everything else is modelled.
    """

    __slots__ = (
        "graph",
        "ir_version",
        "opset_imports",
        "producer_name",
        "producer_version",
        "domain",
        "model_version",
        "doc_string",
        "metadata_props",
        "functions",
        "training_info",
        "extra",
        "external_files",
    )

    def __init__(self, graph: Graph, *, ir_version: int, opset_imports: dict[str, int]):
        self.graph = graph
        self.ir_version = ir_version
        self.opset_imports = dict(opset_imports)
        self.producer_name = ""
        self.producer_version = ""
        self.domain = ""
        self.model_version = 0
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        self.functions: dict[tuple[str, str, str], Function] = {}
        self.training_info: list[onnx.TrainingInfoProto] = []
        self.extra: onnx.ModelProto | None = None
        self.external_files: dict[str, MappedFile] = {}
        """External-data files this model's tensors read from, by absolute path."""

    def all_nodes(self) -> Iterator[Node]:
        """Every node: the main graph and its subgraphs, then each function body and its subgraphs."""
        yield from self.graph.all_nodes()
        for function in self.functions.values():
            yield from function.graph.all_nodes()

    def all_graphs(self) -> Iterator[Graph]:
        """The main graph, function bodies, and every subgraph below them."""
        yield from self.graph.all_graphs()
        for function in self.functions.values():
            yield from function.graph.all_graphs()

    def to_proto(self) -> onnx.ModelProto:
        """The model as a self-contained ModelProto (external data read and inlined)."""
        from onnxgraph.serde.exporter import export_model

        return export_model(self)

    def __repr__(self) -> str:
        opsets = ", ".join(f"{d or 'ai.onnx'}:{v}" for d, v in self.opset_imports.items())
        return f"Model(ir_version={self.ir_version}, opsets=[{opsets}], {self.graph!r})"
