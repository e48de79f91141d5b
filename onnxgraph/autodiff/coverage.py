"""The op coverage table of docs/gradients.md, generated from the rule registry.

Run from the repository root, ``python -m onnxgraph.autodiff.coverage`` rewrites the table in
docs/gradients.md (between the coverage markers); ``--check`` exits 1 when the committed table
differs from the registry.
"""

from __future__ import annotations

import argparse
import os
import sys

import onnx

from onnxgraph.autodiff.registry import ALL, RULES, GradRule, lookup

START, END = "<!-- coverage:start -->", "<!-- coverage:end -->"
DOC = os.path.join("docs", "gradients.md")
"""The default document, relative to the repository root (where the command is run)."""
FAMILY_ORDER = (
    "elementwise",
    "matmul",
    "conv",
    "normalization",
    "pooling",
    "loss",
    "reduction",
    "shape",
    "resize",
    "control",
    "attention",
    "recurrent",
    "loops",
)


def _input_names(op_type: str, rule: GradRule) -> str:
    try:
        schema = onnx.defs.get_schema(op_type)
    except onnx.defs.SchemaError:
        return "all" if rule.differentiable == ALL else ", ".join(map(str, rule.differentiable))
    names = [f.name for f in schema.inputs]
    if schema.inputs and schema.inputs[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic:
        names[-1] += "..."
    if isinstance(rule.differentiable, str):  # ALL
        return ", ".join(names)
    return ", ".join(names[i] if i < len(names) else str(i) for i in rule.differentiable)


def table() -> str:
    """The markdown table: one row per registered op, grouped by family."""
    lookup("", "Add")  # loads the rule modules
    rows = ["| op | family | gradient flows to | |", "| --- | --- | --- | --- |"]
    ordered = sorted(RULES.items(), key=lambda kv: (FAMILY_ORDER.index(kv[1].family), kv[0][1]))
    for (domain, op_type), rule in ordered:
        name = f"{domain}::{op_type}" if domain else op_type
        if rule.fn is None:
            rows.append(f"| {name} | {rule.family} | — | zero gradient: stops it |")
        else:
            flows = _input_names(op_type, rule) + (" (un-broadcast)" if rule.broadcast else "")
            if rule.implicit:
                flows = ", ".join(filter(None, [flows, "outer values its subgraphs read"]))
            rows.append(f"| {name} | {rule.family} | {flows} | rule |")
    counted = sum(1 for r in RULES.values() if r.fn is not None)
    rows.append("")
    rows.append(f"{counted} ops with a gradient rule, {len(RULES) - counted} that stop the gradient.")
    return "\n".join(rows)


def render(document: str) -> str:
    """``document`` with the text between the coverage markers replaced by :func:`table`."""
    head, _, rest = document.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed table is stale")
    parser.add_argument("--doc", default=DOC, help="the markdown file holding the markers")
    args = parser.parse_args(argv)
    with open(args.doc, encoding="utf-8") as f:
        current = f.read()
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"{args.doc}: the coverage table is stale; run python -m onnxgraph.autodiff.coverage")
            return 1
        return 0
    with open(args.doc, "w", encoding="utf-8") as f:
        f.write(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
