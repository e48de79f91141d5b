"""Consecutive Transposes composed into one (or none, when they cancel).

``Transpose(Transpose(x, p1), p2)`` reads ``x`` at ``p1[p2[i]]`` for output axis i.
"""

from __future__ import annotations

from typing import Any

from onnxgraph.node import Node
from onnxgraph.optimizers.rewriter.rule import (
    Failure,
    RewriteContext,
    RewriteRule,
    RewriteRuleSet,
    fail,
)
from onnxgraph.optimizers.rewriter.values import transpose_perm
from onnxgraph.value import Value


def _check(ctx: RewriteContext, x: Value, inner: Node, outer: Node) -> dict | Failure:
    p1, p2 = transpose_perm(inner), transpose_perm(outer)
    if p1 is None or p2 is None or len(p1) != len(p2):
        return fail("a permutation is unknown")
    return {"perm": [p1[i] for i in p2]}


def _compose(op, x: Value, outer: Node, perm: list[int], **_: Any) -> Value:
    if perm == list(range(len(perm))):
        return x
    return op.Transpose(x, perm=perm, _name=outer.name)


def _pattern(op, x):
    return op.Transpose(op.Transpose(x, _bind="inner"), _bind="outer")


RULES = RewriteRuleSet([RewriteRule("transpose_pair", _pattern, _compose, _check)])
