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


def save_checked(
    model,
    output: str,
    *,
    source: str | None,
    ran_on_onnxruntime: bool = False,
    input_shapes: dict | None = None,
    **save_options,
) -> str:
    """Check the model a command is about to write, then write it (nothing is written on failure).

    Every command that writes a model goes through here: see
    :func:`onnxgraph.runtime.written.check_before_write` for what is checked (``source=None`` skips
    running the result on onnxruntime, for ``--no-verify``).

    Returns:
        A note on what running the result took ("" usually).

    Raises:
        CheckFailed: the result fails onnx.checker or does not run where the input runs (exit 1).
    """
    from onnxgraph.cli.errors import CheckFailed
    from onnxgraph.runtime.written import ResultCheckFailed, check_before_write
    from onnxgraph.serde.fileio import save

    try:
        note = check_before_write(
            model, source=source, ran_on_onnxruntime=ran_on_onnxruntime, input_shapes=input_shapes
        )
    except ResultCheckFailed as exc:
        raise CheckFailed(f"{output}: not written: {exc}") from exc
    save(model, output, **save_options)
    return note
