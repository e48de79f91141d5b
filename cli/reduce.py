"""``onnxgraph reduce``: cut a failing model down to a small model that still fails."""

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
        "onnxgraph reduce model.onnx --fails-on onnxruntime -o small.onnx",
        "onnxgraph reduce model.onnx --differs-from-reference -o small.onnx",
        'onnxgraph reduce model.onnx --check "python repro.py {model}" -o small.onnx',
    )
)
@model_argument
@output_option("Where to write the reduced model.")
@click.option(
    "--check",
    "command",
    metavar='"COMMAND {model}"',
    help="Shell command; a non-zero exit status means the model still fails "
    "({model}: the candidate's path, {inputs}: an .npz of its inputs).",
)
@click.option(
    "--fails-on",
    type=click.Choice(["onnxruntime"]),
    help="Built-in check: no session can be created, or the run raises or crashes.",
)
@click.option(
    "--differs-from-reference", is_flag=True, help="Built-in check: onnxruntime's outputs differ from onnx.reference's."
)
@click.option("--match", metavar="REGEX", help="The failure's message must contain this too (same failure).")
@click.option(
    "--provider",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Execution provider of the built-in checks.",
)
@inputs_option
@input_shape_option
@seed_option
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds one check may run; longer counts as failing (a hang).",
)
@click.option(
    "--save-inputs",
    type=click.Path(dir_okay=False, path_type=str),
    metavar="FILE.npz",
    help="Also write the reduced model's inputs (values of the original run where known).",
)
@allow_outside_option
@json_flag
def reduce(
    model: str,
    output: str,
    command: str | None,
    fails_on: str | None,
    differs_from_reference: bool,
    match: str | None,
    provider: str,
    inputs: str | None,
    input_shapes: tuple[str, ...],
    seed: int,
    timeout: float,
    save_inputs: str | None,
    allow_outside: bool,
    as_json: str | None,
) -> None:
    """Reduce MODEL to a small sub-model on which the check still fails, and write it to OUTPUT.

    Cut values become inputs with their inferred types (fed with the values of a run of the original
    where known); values computed from constants or input shapes only keep their values. Prints the
    path it took. Exits 0 when a reduced model was written, 2 when the check passes on MODEL.
    """
    import onnxgraph
    from onnxgraph.cli.output import emit
    from onnxgraph.debug.checks import Check, CommandCheck, WorkerCheck
    from onnxgraph.debug.exposure import known_values
    from onnxgraph.debug.feeds import model_feeds
    from onnxgraph.debug.npz import NpzWriter
    from onnxgraph.debug.reduction import reduce_model
    from onnxgraph.pathguard import Output, check_outputs
    from onnxgraph.runtime.providers import resolve_providers
    from onnxgraph.shape_inference import inferred_types

    if sum((command is not None, fails_on is not None, differs_from_reference)) != 1:
        raise BadInput("give exactly one of --check, --fails-on, --differs-from-reference")
    if match is not None:
        import re

        try:
            re.compile(match)
        except re.error as exc:
            raise BadInput(f"--match '{match}' is not a regular expression: {exc}") from None
    check_outputs(
        [Output(output, "-o", model=True), Output(save_inputs, "--save-inputs"), Output(as_json, "--json")],
        models=[model],
        reads=[inputs] if inputs else [],
    )
    providers = resolve_providers(provider)
    check: Check
    if command is not None:
        check = CommandCheck(command, timeout=timeout, match=match)
    else:
        check = WorkerCheck(
            "reference" if differs_from_reference else "onnxruntime", providers=providers, timeout=timeout, match=match
        )

    def show(step) -> None:
        if as_json != "-":
            verdict = "fails" if step.failing else "passes"
            click.echo(f"{step.phase}: {step.nodes} nodes {verdict}" + (f" ({step.detail})" if step.detail else ""))

    try:
        loaded = onnxgraph.load(model, allow_external_data_outside=allow_outside)
        feeds = model_feeds(loaded, inputs, parse_input_shapes(input_shapes), seed)
        values, engine = known_values(loaded, feeds, providers)
        if not engine:
            click.echo(
                "warning: neither onnxruntime nor onnx.reference runs the model; cut inputs get random data", err=True
            )
        result = reduce_model(loaded, check, values, inferred_types(loaded), seed=seed, on_step=show)
    finally:
        check.close()
    onnxgraph.save(onnxgraph.from_proto(result.model), output)
    if save_inputs:
        with NpzWriter(save_inputs) as npz:
            for name, array in result.feeds.items():
                npz.add(name, array)
    kept = ", ".join(f"{n.op_type} '{n.name or n.output[0]}'" for n in result.model.graph.node)
    summary = (
        f"wrote {output}: {len(result.kept)} of {result.original_nodes} nodes ({kept}); "
        f"{len(result.steps)} checks, {result.check_seconds:.1f} s checking, {result.seconds:.1f} s in all"
    )
    emit(result.to_json(), as_json, lambda: click.echo(summary))
