"""Rewrite rules and rule sets: find a pattern, check it, build the replacement, splice it in.

>>> def pattern(op, x, w, b):
...     return op.Add(op.MatMul(x, w), b, _commute=True)
>>> def check(ctx, x, w, b):
...     return None if rank(x) == 2 else fail("x is not 2-D")           # doctest: +SKIP
>>> def replacement(op, x, w, b):
...     return op.Gemm(x, w, b)
>>> rule = RewriteRule("matmul_add_to_gemm", pattern, replacement, check)

A check is stateless: it returns None (accept), a dict of extra bindings for the replacement
(accept), or :func:`fail` with the reason (reject; the next possible match is tried). The
replacement receives an :class:`~onnxgraph.builder.OpBuilder` that inserts before the root node,
and returns the value(s) that take the place of the root's outputs; matched nodes left without
readers are removed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from onnxgraph.builder import OpBuilder
from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.node import Node
from onnxgraph.optimizers.rewriter.editing import (
    GraphEditor,
    Scope,
    canonical_domain,
    drop_stale_value_info,
    scopes,
)
from onnxgraph.optimizers.rewriter.matcher import Match, find_matches
from onnxgraph.optimizers.rewriter.pattern import Pattern
from onnxgraph.value import Value


@dataclass(frozen=True)
class Failure:
    """Why a check rejected a match."""

    reason: str

    def __bool__(self) -> bool:
        return False


def fail(reason: str) -> Failure:
    """Reject a match, saying why (returned by checks)."""
    return Failure(reason)


@dataclass
class RewriteContext:
    """What checks and rule application see besides the bindings.

    Attributes:
        model: the model being rewritten.
        match: the current match (graph, root, matched nodes).
        editor: replaces values and removes nodes keeping graph interfaces intact.
        scope: the graph being rewritten, its opset version, and whether it lies in a function.
    """

    model: Model
    editor: GraphEditor
    match: Match | None = None
    scope: Scope | None = None


Check = Callable[..., "dict[str, Any] | Failure | None"]


class RewriteRule:
    """One rewrite: a pattern, an optional check and a replacement.

    Args:
        name: the rule's name (statistics count rewrites under it).
        pattern: ``pattern(op, *vars)`` building the pattern with a PatternBuilder.
        replacement: ``replacement(op, **bindings)`` building the new value(s) with an OpBuilder.
        check: ``check(ctx, **bindings)`` -> None, a dict of extra bindings, or a Failure.
    """

    def __init__(
        self,
        name: str,
        pattern: Callable[..., Any],
        replacement: Callable[..., Any],
        check: Check | None = None,
    ):
        self.name = name
        self.pattern = Pattern.from_function(pattern)
        self.replacement = replacement
        self.check = check

    @property
    def root_op(self) -> tuple[str, str]:
        return (canonical_domain(self.pattern.root.domain), self.pattern.root.op_type)

    def try_rewrite(self, ctx: RewriteContext, node: Node) -> bool:
        """Rewrite the first acceptable match rooted at ``node``; return whether one was applied."""
        for match, verdict in self._checked_matches(ctx, node):
            if isinstance(verdict, Failure):
                continue
            bindings = {**match.bindings, **(verdict if isinstance(verdict, dict) else {})}
            if _apply(ctx, match, self.pattern.root.num_outputs, self.replacement, bindings):
                return True
        return False

    def diagnose(self, model: Model, node: Node) -> list[str]:
        """Why this rule does not rewrite at ``node``: one reason per match tried (for debugging).

        Returns:
            The reasons; ``["no match"]`` when the pattern is not found at ``node`` at all, and an
            empty list when a match passes its check.
        """
        ctx = RewriteContext(model, GraphEditor(model))
        ctx.scope = next((s for s in scopes(model) if s.graph is node.graph), None)
        reasons = []
        for _, verdict in self._checked_matches(ctx, node):
            if not isinstance(verdict, Failure):
                return []
            reasons.append(verdict.reason)
        return reasons or ["no match"]

    def _checked_matches(self, ctx: RewriteContext, node: Node):
        """Each match rooted at ``node`` with its check's verdict."""
        for match in find_matches(self.pattern, node):
            if self._intermediate_escapes(ctx, match):
                yield match, fail("a subgraph returns an intermediate value")
                continue
            ctx.match = match
            yield match, self.check(ctx, **match.bindings) if self.check is not None else None

    def _intermediate_escapes(self, ctx: RewriteContext, match: Match) -> bool:
        """True when a subgraph returns an intermediate value of the match (another reader)."""
        return any(
            ctx.editor.escapes(value)
            for pn in self.pattern.nodes()
            if pn is not self.pattern.root and not pn.allow_other_uses
            for value in match.nodes[id(pn)].outputs
        )

    def __repr__(self) -> str:
        return f"RewriteRule({self.name!r})"


class _TrackingBuilder(OpBuilder):
    """An OpBuilder remembering the initializers it made, so a refused rewrite can undo them."""

    def __init__(self, graph: Graph, **kwargs: Any):
        super().__init__(graph, **kwargs)
        self.initializers: list[str] = []
        """Names of the initializers this builder made."""

    def const(self, data: Any, dtype: Any = None, *, name: str = "const") -> Value:
        value = super().const(data, dtype, name=name)
        if value.name is not None and value.is_initializer():
            self.initializers.append(value.name)
        return value

    def undo(self) -> None:
        for node in reversed(self.created):
            self.graph.remove(node, safe=False)
        for initializer in self.initializers:
            self.graph.remove_initializer(initializer)


def _apply(
    ctx: RewriteContext,
    match: Match,
    num_outputs: int,
    replacement: Callable[..., Any],
    bindings: dict[str, Any],
) -> bool:
    graph, root = match.graph, match.root
    if ctx.scope is None:
        raise ValueError("a rewrite needs ctx.scope, the scope of the graph being rewritten")
    op = _TrackingBuilder(graph, insert_before=root, constants_as_nodes=ctx.scope.in_function)
    result = replacement(op, **bindings)
    new_values = result if isinstance(result, tuple) else (result,)
    olds = root.outputs[:num_outputs]
    if len(new_values) != num_outputs or not all(
        ctx.editor.can_replace(old, new) for old, new in zip(olds, new_values, strict=True)
    ):
        op.undo()
        return False
    for old, new in zip(olds, new_values, strict=True):
        ctx.editor.replace(old, new)
    ctx.editor.remove_unused(match.nodes.values())
    bound = [v for v in match.bindings.values() if isinstance(v, Value)]
    ctx.editor.drop_unused_constants(bound + match.constants)
    return True


class RewriteRuleSet:
    """Rules applied together: every node of every graph is offered to the rules rooted at its op.

    Args:
        rules: the rules, tried in order for each node.
        max_sweeps: how many times to sweep each graph while rewrites keep happening.
    """

    def __init__(self, rules: Iterable[RewriteRule], *, max_sweeps: int = 4):
        self.rules = list(rules)
        self.max_sweeps = max_sweeps
        self._by_op: dict[tuple[str, str], list[RewriteRule]] = {}
        for rule in self.rules:
            self._by_op.setdefault(rule.root_op, []).append(rule)

    def __add__(self, other: RewriteRuleSet) -> RewriteRuleSet:
        return RewriteRuleSet(self.rules + other.rules, max_sweeps=max(self.max_sweeps, other.max_sweeps))

    def apply(self, model: Model) -> Counter[str]:
        """Rewrite ``model`` in place (all graphs and function bodies); count rewrites by rule."""
        stats: Counter[str] = Counter()
        ctx = RewriteContext(model, GraphEditor(model))
        for scope in scopes(model):
            ctx.scope = scope
            for _ in range(self.max_sweeps):
                if not self._sweep(ctx, scope.graph, stats):
                    break
            drop_stale_value_info(scope.graph)
        return stats

    def _sweep(self, ctx: RewriteContext, graph: Graph, stats: Counter[str]) -> int:
        applied = 0
        for node in graph:
            if node.graph is not graph:
                continue
            for rule in self._by_op.get((canonical_domain(node.domain), node.op_type), ()):
                if rule.try_rewrite(ctx, node):
                    stats[rule.name] += 1
                    applied += 1
                    break
        return applied
