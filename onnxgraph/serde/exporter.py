"""IR -> ModelProto.

Export rebuilds every modelled field from the IR and starts each message from the fields the IR kept
aside (see :mod:`onnxgraph.serde.fields`), so an unchanged model exports to the same bytes it came from.
Where tensor data goes (inline or into an external file) is decided by a *tensor sink*.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx

from onnxgraph import types
from onnxgraph.attribute import Attribute, AttrType
from onnxgraph.function import Function
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.tensor import SparseTensor, Tensor
from onnxgraph.value import Value

TensorSink = Callable[[Tensor, str], onnx.TensorProto]
"""Turns a tensor (and the name it is saved under) into the TensorProto to write."""


def inline_sink(tensor: Tensor, name: str) -> onnx.TensorProto:
    """Every tensor inline, external data read in."""
    return tensor.to_proto(name)


def _dense(value: Value) -> Tensor:
    """The data of a dense initializer (sparse ones live in ``Graph.sparse_initializers``)."""
    assert isinstance(value.const_value, Tensor), f"initializer {value.name!r} holds no dense tensor"
    return value.const_value


def _props(target, props: dict[str, str]) -> None:
    for key, value in props.items():
        entry = target.add()
        entry.key, entry.value = key, value


class _Exporter:
    def __init__(self, sink: TensorSink, initializer_sink: TensorSink | None = None):
        self.sink = sink
        self.initializer_sink = initializer_sink

    def value_info(self, value: Value, proto: onnx.ValueInfoProto) -> None:
        proto.name = value.name or ""
        if value.type is not None:
            proto.type.CopyFrom(value.type)
        if value.doc_string:
            proto.doc_string = value.doc_string
        _props(proto.metadata_props, value.metadata_props)

    def graph(self, graph: Graph, proto: onnx.GraphProto, initializer_sink: TensorSink | None = None) -> None:
        if graph.extra is not None:
            proto.CopyFrom(graph.extra)
        if graph.name:
            proto.name = graph.name
        if graph.doc_string:
            proto.doc_string = graph.doc_string
        for node in graph:
            self.node(node, proto.node.add())
        sink = initializer_sink or self.sink
        for name, value in graph.initializers.items():
            proto.initializer.append(sink(_dense(value), name))
        for value in graph.sparse_initializers.values():
            assert isinstance(value.const_value, SparseTensor)  # add_sparse_initializer sets it
            proto.sparse_initializer.append(value.const_value.to_proto())
        for value in graph.inputs:
            self.value_info(value, proto.input.add())
        for value in graph.outputs:
            self.value_info(value, proto.output.add())
        for value in graph.value_info:
            self.value_info(value, proto.value_info.add())
        proto.quantization_annotation.extend(graph.quantization_annotation)
        _props(proto.metadata_props, graph.metadata_props)

    def node(self, node: Node, proto: onnx.NodeProto) -> None:
        if node.extra is not None:
            proto.CopyFrom(node.extra)
        proto.input.extend(["" if v is None else v.name for v in node.inputs])
        proto.output.extend([v.name for v in node.outputs])
        proto.op_type = node.op_type
        if node.name:
            proto.name = node.name
        if node.domain:
            proto.domain = node.domain
        if node.overload:
            proto.overload = node.overload
        if node.doc_string:
            proto.doc_string = node.doc_string
        for attr in node.attributes.values():
            self.attribute(attr, proto.attribute.add())
        _props(proto.metadata_props, node.metadata_props)

    def attribute(self, attr: Attribute, proto: onnx.AttributeProto) -> None:
        proto.name = attr.name
        proto.type = attr.type  # type: ignore[assignment]  # the stub's AttributeType is a plain int at runtime
        if attr.doc_string:
            proto.doc_string = attr.doc_string
        if attr.ref_attr_name:
            proto.ref_attr_name = attr.ref_attr_name
            return
        t, v = attr.type, attr.value
        if v is None:
            return
        if t == AttrType.FLOAT:
            proto.f = v
        elif t == AttrType.INT:
            proto.i = v
        elif t == AttrType.STRING:
            proto.s = _encode(v)
        elif t == AttrType.TENSOR:
            proto.t.CopyFrom(self.sink(v, v.name))
        elif t == AttrType.GRAPH:
            self.graph(v, proto.g)
        elif t == AttrType.SPARSE_TENSOR:
            proto.sparse_tensor.CopyFrom(v.to_proto())
        elif t == AttrType.TYPE_PROTO:
            proto.tp.CopyFrom(v)
        elif t == AttrType.FLOATS:
            proto.floats.extend(v)
        elif t == AttrType.INTS:
            proto.ints.extend(v)
        elif t == AttrType.STRINGS:
            proto.strings.extend([_encode(s) for s in v])
        elif t == AttrType.TENSORS:
            proto.tensors.extend([self.sink(x, x.name) for x in v])
        elif t == AttrType.GRAPHS:
            for g in v:
                self.graph(g, proto.graphs.add())
        elif t == AttrType.SPARSE_TENSORS:
            proto.sparse_tensors.extend([x.to_proto() for x in v])
        elif t == AttrType.TYPE_PROTOS:
            proto.type_protos.extend(v)

    def function(self, function: Function, proto: onnx.FunctionProto) -> None:
        if function.extra is not None:
            proto.CopyFrom(function.extra)
        proto.name = function.name
        if function.domain:
            proto.domain = function.domain
        if function.overload:
            proto.overload = function.overload
        if function.doc_string:
            proto.doc_string = function.doc_string
        body = function.graph
        proto.input.extend([v.name for v in body.inputs])
        proto.output.extend([v.name for v in body.outputs])
        proto.attribute.extend(function.attributes)
        for attr in function.attribute_defaults.values():
            self.attribute(attr, proto.attribute_proto.add())
        for node in body:
            self.node(node, proto.node.add())
        _opsets(proto.opset_import, function.opset_imports)
        for value in body.value_info:
            self.value_info(value, proto.value_info.add())
        _props(proto.metadata_props, function.metadata_props)

    def initializers_as_inputs(self, graph: Graph, proto: onnx.GraphProto) -> None:
        """List every initializer as a graph input too, as IR versions below 4 require."""
        listed = {v.name for v in graph.inputs}
        for name, value in graph.initializers.items():
            if name not in listed:
                info = proto.input.add()
                info.name = name
                tensor = _dense(value)
                info.type.CopyFrom(value.type or types.tensor_type(tensor.elem_type, tensor.dims))

    def model(self, model: Model, ir_version: int | None) -> onnx.ModelProto:
        proto = onnx.ModelProto()
        if model.extra is not None:
            proto.CopyFrom(model.extra)
        version = ir_version or model.ir_version or default_ir_version(model.opset_imports)
        proto.ir_version = version
        for name in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
            value = getattr(model, name)
            if value:
                setattr(proto, name, value)
        _opsets(proto.opset_import, model.opset_imports)
        self.graph(model.graph, proto.graph, self.initializer_sink)
        if version < 4:
            self.initializers_as_inputs(model.graph, proto.graph)
        _props(proto.metadata_props, model.metadata_props)
        proto.training_info.extend(model.training_info)
        for function in model.functions.values():
            self.function(function, proto.functions.add())
        return proto


def _opsets(target, opsets: dict[str, int]) -> None:
    for domain, version in opsets.items():
        entry = target.add()
        entry.domain, entry.version = domain, version


def _encode(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def default_ir_version(opset_imports: dict[str, int]) -> int:
    """The lowest IR version that supports the model's default-domain opset (for models built in code)."""
    opset = opset_imports.get("", opset_imports.get("ai.onnx", 1))
    for _release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return ir
    return onnx.IR_VERSION


def export_node(node: Node, sink: TensorSink = inline_sink) -> onnx.NodeProto:
    """Export one node (its subgraphs included) to a NodeProto."""
    proto = onnx.NodeProto()
    _Exporter(sink).node(node, proto)
    return proto


def export_model(
    model: Model,
    sink: TensorSink = inline_sink,
    *,
    ir_version: int | None = None,
    initializer_sink: TensorSink | None = None,
) -> onnx.ModelProto:
    """Export ``model`` to a ModelProto, placing tensor data through ``sink``.

    ``initializer_sink``, when given, places the main graph's initializers instead (it is called for
    them in order, so the n-th call makes ``graph.initializer[n]``).
    """
    return _Exporter(sink, initializer_sink).model(model, ir_version)
