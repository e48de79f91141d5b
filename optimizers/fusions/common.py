"""What the fusion rules share: reading weights safe to fold, and copying node attributes."""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxgraph.node import Node
from onnxgraph.optimizers.rewriter.rule import RewriteContext
from onnxgraph.optimizers.rewriter.values import const_value
from onnxgraph.value import Value


def private_weight(ctx: RewriteContext, value: Value | None) -> np.ndarray | None:
    """A floating-point constant that only matched nodes read (safe to fold), or None."""
    data = const_value(value)
    if data is None or data.dtype.kind != "f" or value is None:
        return None
    assert ctx.match is not None
    matched = {id(n) for n in ctx.match.nodes.values()}
    if any(id(user) not in matched for user, _ in value.uses()):
        return None
    return data


def float_constant(value: Value | None) -> np.ndarray | None:
    """A floating-point constant's data, or None."""
    data = const_value(value)
    return data if data is not None and data.dtype.kind == "f" else None


def attributes_of(node: Node, **overrides: Any) -> dict[str, Any]:
    """``node``'s attributes as builder keywords, with ``overrides`` (None drops one)."""
    attrs: dict[str, Any] = {name: attr for name, attr in node.attributes.items() if name not in overrides}
    attrs.update({name: value for name, value in overrides.items() if value is not None})
    return attrs


def string_attr(node: Node, name: str, default: str) -> str:
    """A string attribute as str (ONNX stores them as bytes)."""
    value = node.attr(name, default)
    return value.decode() if isinstance(value, bytes) else value
