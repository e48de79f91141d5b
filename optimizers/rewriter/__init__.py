"""The pattern rewriter: rules made of a pattern, a check and a replacement.

See docs/optimize-rules.md for the API and the rules that ship with onnxgraph.
"""

from __future__ import annotations

from onnxgraph.optimizers.rewriter.editing import GraphEditor
from onnxgraph.optimizers.rewriter.matcher import Match, find_matches
from onnxgraph.optimizers.rewriter.pattern import Pattern, PatternBuilder, Var
from onnxgraph.optimizers.rewriter.rule import (
    Failure,
    RewriteContext,
    RewriteRule,
    RewriteRuleSet,
    fail,
)
from onnxgraph.optimizers.rewriter.values import const_ints, const_value

__all__ = [
    "Failure",
    "GraphEditor",
    "Match",
    "Pattern",
    "PatternBuilder",
    "RewriteContext",
    "RewriteRule",
    "RewriteRuleSet",
    "Var",
    "const_ints",
    "const_value",
    "fail",
    "find_matches",
]
