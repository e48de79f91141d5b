"""Output helpers shared by commands: JSON reports and human-readable sizes."""

from __future__ import annotations

import json

import click


def write_json(data: dict, path: str) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically, or to stdout when ``path`` is ``-``."""
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    from onnxgraph.fsutil import atomic_write

    with atomic_write(path) as f:
        f.write(text.encode())


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
