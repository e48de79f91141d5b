"""Model-local functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from onnxgraph.graph import Graph

if TYPE_CHECKING:
    import onnx

    from onnxgraph.attribute import Attribute


class Function:
    """A model-local function (FunctionProto): a body graph plus a signature.

    The body's inputs and outputs carry the function's formal parameters; ``attributes`` lists the
    attribute parameter names and ``attribute_defaults`` those with default values.
    """

    __slots__ = (
        "domain",
        "name",
        "overload",
        "graph",
        "attributes",
        "attribute_defaults",
        "opset_imports",
        "doc_string",
        "metadata_props",
        "extra",
    )

    def __init__(self, domain: str, name: str, graph: Graph, *, overload: str = ""):
        self.domain = domain
        self.name = name
        self.overload = overload
        self.graph = graph
        self.attributes: list[str] = []
        self.attribute_defaults: dict[str, Attribute] = {}
        self.opset_imports: dict[str, int] = {}
        self.doc_string = ""
        self.metadata_props: dict[str, str] = {}
        self.extra: onnx.FunctionProto | None = None

    @property
    def identifier(self) -> tuple[str, str, str]:
        """``(domain, name, overload)``: how nodes refer to this function."""
        return (self.domain, self.name, self.overload)

    def __repr__(self) -> str:
        return f"Function({self.domain}::{self.name}, {len(self.graph)} nodes)"
