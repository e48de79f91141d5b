"""Keeping the protobuf fields the IR does not model, so export reproduces the input exactly.

For each message the IR models some fields. :func:`remainder` collects everything else: unmodelled
fields (future ONNX additions, quantization annotations, device configurations...) and modelled scalar
fields that are present but empty (proto2 remembers presence, and exact round trips need it). The
exporter starts from the remainder and fills in the modelled fields.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def is_repeated(field: FieldDescriptor) -> bool:
    """Whether a field is a list (protobuf 6 dropped ``label`` for ``is_repeated``)."""
    flag = getattr(field, "is_repeated", None)
    return flag if flag is not None else field.label == FieldDescriptor.LABEL_REPEATED


def copy_field(target: Message, field: FieldDescriptor, value) -> None:
    """Set ``field`` of ``target`` to ``value`` (a list, a sub-message or a scalar)."""
    if is_repeated(field):
        getattr(target, field.name).extend(value)
    elif field.type == _MESSAGE:
        getattr(target, field.name).CopyFrom(value)
    else:
        setattr(target, field.name, value)


def remainder(proto: Message, rebuilt: frozenset[str], scalars: frozenset[str]) -> Message | None:
    """The part of ``proto`` the exporter would not reproduce, or None when there is none.

    Args:
        proto: the source message.
        rebuilt: fields the exporter always writes from the IR (lists, sub-messages).
        scalars: scalar fields the IR models; kept here only when present with an empty value.
    """
    rest = None
    for field, value in proto.ListFields():
        name = field.name
        if name in rebuilt or (name in scalars and value):
            continue
        if rest is None:
            rest = type(proto)()
        copy_field(rest, field, value)
    return rest


NODE_REBUILT = frozenset({"input", "output", "attribute", "metadata_props"})
NODE_SCALARS = frozenset({"name", "op_type", "domain", "overload", "doc_string"})
GRAPH_REBUILT = frozenset(
    {
        "node",
        "initializer",
        "sparse_initializer",
        "input",
        "output",
        "value_info",
        "metadata_props",
        "quantization_annotation",
    }
)
GRAPH_SCALARS = frozenset({"name", "doc_string"})
MODEL_REBUILT = frozenset({"graph", "opset_import", "metadata_props", "training_info", "functions"})
MODEL_SCALARS = frozenset({"ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"})
FUNCTION_REBUILT = frozenset(
    {"input", "output", "attribute", "attribute_proto", "node", "opset_import", "value_info", "metadata_props"}
)
FUNCTION_SCALARS = frozenset({"name", "domain", "overload", "doc_string"})
