"""The pass registry (name -> Pass class) and the default pipeline.

Passes are found in the modules listed in :data:`PASS_MODULES`: every :class:`Pass` subclass
with a ``name`` that a module defines is registered under that name. Modules that are not
installed are skipped, and so are pipeline names nobody registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from onnxgraph.errors import OnnxGraphError
from onnxgraph.optimizers.base import Pass

PASS_MODULES = (
    "onnxgraph.optimizers.constants",
    "onnxgraph.optimizers.inline_if",
    "onnxgraph.optimizers.shapes",
    "onnxgraph.optimizers.fold",
    "onnxgraph.optimizers.noop",
    "onnxgraph.optimizers.fusions",
    "onnxgraph.optimizers.siblings",
    "onnxgraph.optimizers.cse",
    "onnxgraph.optimizers.dce",
)
DEFAULT_PIPELINE = ("constants", "inline-if", "shapes", "fold", "noop", "fuse", "cse", "dce")
"""Pass names in the order the default pipeline runs them (repeated to a fixed point). ``siblings`` is
registered but opt-in (``--passes``): on onnxruntime CPU the merged projections ran no faster, in one
measurement slower (docs/benchmarks.md)."""

_registry: dict[str, type[Pass]] | None = None


def passes() -> dict[str, type[Pass]]:
    """Every registered pass class by name."""
    global _registry
    if _registry is None:
        found: dict[str, type[Pass]] = {}
        for module_name in PASS_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise
                continue
            for item in vars(module).values():
                defined_here = isinstance(item, type) and item.__module__.startswith(module_name)
                if defined_here and issubclass(item, Pass) and item.name:
                    found[item.name] = item
        _registry = found
    return _registry


def default_pipeline() -> list[str]:
    """The default pipeline's pass names, those not registered left out."""
    available = passes()
    return [name for name in DEFAULT_PIPELINE if name in available]


def build_pipeline(
    names: Iterable[str],
    *,
    options: Mapping[str, Any] | None = None,
    disabled: Mapping[str, Iterable[str]] | None = None,
) -> list[Pass]:
    """Instantiate passes by name.

    Args:
        names: pass names, in order.
        options: pipeline options; each pass receives those it lists in ``Pass.options``.
        disabled: rewrite cases to switch off, by pass name.

    Raises:
        OnnxGraphError: a name is not registered (the message lists the known ones).
    """
    available = passes()
    options = options or {}
    disabled = disabled or {}
    pipeline = []
    for name in names:
        if name not in available:
            raise OnnxGraphError(f"unknown pass '{name}' (known: {', '.join(sorted(available))})")
        cls = available[name]
        kwargs = {k: v for k, v in options.items() if k in cls.options}
        if disabled.get(name):  # passes without rewrite cases need not accept ``disabled``
            kwargs["disabled"] = disabled[name]
        pipeline.append(cls(**kwargs))
    return pipeline
