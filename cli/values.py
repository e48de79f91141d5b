"""``onnxgraph values``: dump a model's intermediate values to an .npz file for a notebook."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import BadInput
from onnxgraph.cli.options import (
    allow_outside_option,
    examples,
    input_shape_option,
    inputs_option,
    json_flag,
    model_argument,
    output_option,
    parse_input_shapes,
    seed_option,
)


@click.command(
    epilog=examples(
        "onnxgraph values model.onnx --inputs x.npz -o values.npz",
        "onnxgraph values model.onnx -o attn.npz --only '*attn*' --only 'Softmax'",
        "onnxgraph values model.onnx -o values.npz --input-shape x=8,3,224,224 --json",
    )
)
@model_argument
@output_option("Where to write the values (array names are value names).", metavar="VALUES.npz")
@inputs_option
@click.option(
    "--only",
    "patterns",
    multiple=True,
    metavar="PATTERN",
    help="Keep values whose name, or whose node's name or op type, matches this glob (repeatable).",
)
@input_shape_option
@seed_option
@click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Execution provider.",
)
@click.option(
    "--chunk-mb",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Expose at most this many MiB of values per onnxruntime session.",
)
@allow_outside_option
@json_flag
def values(
    model: str,
    output: str,
    inputs: str | None,
    patterns: tuple[str, ...],
    input_shapes: tuple[str, ...],
    seed: int,
    provider: str,
    chunk_mb: int,
    allow_outside: bool,
    as_json: str | None,
) -> None:
    """Run MODEL and write its inputs and chosen intermediate values (main graph) to VALUES.npz.

    Values are written a chunk at a time, so memory holds one chunk, not the whole model's values.
    """
    import fnmatch

    import onnxgraph
    from onnxgraph.cli.bench import progress_bar
    from onnxgraph.cli.output import emit
    from onnxgraph.debug.exposure import Exposer, intermediates
    from onnxgraph.debug.feeds import model_feeds
    from onnxgraph.debug.npz import NpzWriter
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.runtime.providers import resolve_providers

    check_outputs([Output(output, "-o"), Output(as_json, "--json")], models=[model], reads=[inputs] if inputs else [])
    loaded = onnxgraph.load(model, allow_external_data_outside=allow_outside)
    feeds = model_feeds(loaded, inputs, parse_input_shapes(input_shapes), seed)
    chosen = [
        v
        for v in intermediates(loaded)
        if not patterns or any(fnmatch.fnmatchcase(key, p) for p in patterns for key in (v.name, v.node, v.op_type))
    ]
    if patterns and not chosen:
        raise BadInput(f"{model}: no value matches {', '.join(patterns)}")
    exposer = Exposer(loaded, resolve_providers(provider), chunk_bytes=chunk_mb << 20, label=model)
    written = 0
    with NpzWriter(output) as npz, progress_bar() as update:
        for name, array in feeds.items():
            npz.add(name, array)
        for chunk in exposer.run(feeds, [v.name for v in chosen]):
            for name, array in chunk.items():
                npz.add(name, array)
                written += 1
            update(f"values {written}/{len(chosen)}", written / len(chosen))
    summary = {"output": output, "inputs": len(feeds), "values": written, "skipped": len(chosen) - written}
    left_out = f" ({summary['skipped']} non-tensor values left out)" if summary["skipped"] else ""
    emit(summary, as_json, lambda: click.echo(f"wrote {output}: {len(feeds)} inputs and {written} values{left_out}"))
