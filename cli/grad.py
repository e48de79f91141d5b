"""``onnxgraph grad``: build a model that also computes gradients."""

from __future__ import annotations

import click

from onnxgraph.cli.errors import BadInput
from onnxgraph.cli.options import (
    allow_outside_option,
    examples,
    json_flag,
    model_argument,
    output_option,
    overwrite_option,
)
from onnxgraph.cli.output import emit, progress, save_checked, stdout_console

LOSS_FUNCTIONS = ("mse", "l1", "cross_entropy", "bce_with_logits", "sum")
"""onnxgraph.autodiff.LOSS_FUNCTIONS, spelled out so --help needs no heavy import (a test keeps the
two equal)."""


class _OldSpellings(click.Command):
    """Accept the spellings of the previous release, each with a one-line deprecation warning.

    ``--output-path FILE`` became ``-o/--output FILE``, and ``--output NAME`` (the model output a loss or
    vjp applies to) became ``--model-output NAME``. The two meanings of ``--output`` cannot clash: the old
    command line always named its file with ``-o`` or ``--output-path`` as well, so ``--output`` next to
    either of those is the old model-output option, and ``--output`` without them is the file.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        head, tail = args[:end], args[end:]
        old_file = any(_spelling(a) in ("-o", "--output-path") for a in head)
        rewritten = []
        for arg in head:
            spelling = _spelling(arg)
            if spelling == "--output-path":
                _deprecated("--output-path", "-o/--output")
                arg = "--output" + arg[len("--output-path") :]
            elif spelling == "--output" and old_file:
                _deprecated("--output NAME", "--model-output NAME")
                arg = "--model-output" + arg[len("--output") :]
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten + tail)


def _spelling(arg: str) -> str:
    """The option an argument spells: ``--output-path=x`` -> ``--output-path``, ``-ofile`` -> ``-o``."""
    if arg.startswith("--"):
        return arg.split("=", 1)[0]
    return arg[:2] if arg.startswith("-o") else arg


def _deprecated(old: str, new: str) -> None:
    click.echo(f"warning: {old} is deprecated and will be removed in the next release: use {new}", err=True)


@click.command(
    cls=_OldSpellings,
    epilog=examples(
        "onnxgraph grad mlp.onnx -o mlp_grad.onnx --loss-fn cross_entropy --model-output logits",
        "onnxgraph grad model.onnx -o loss_grad.onnx --loss loss --wrt fc.weight --wrt fc.bias",
        "onnxgraph grad model.onnx -o vjp.onnx --vjp --json",
    ),
)
@model_argument
@output_option("Where to write the gradient model.", dest="out")
@click.option("--loss", "loss", metavar="OUTPUT", help="Differentiate this scalar output (seed 1).")
@click.option(
    "--loss-fn",
    "loss_fn",
    type=click.Choice(LOSS_FUNCTIONS),
    help="Append this loss on --model-output, with a new input 'target'.",
)
@click.option("--vjp", is_flag=True, help="Vector-Jacobian product: each output O gets an input O_grad.")
@click.option(
    "--model-output",
    "model_output",
    metavar="NAME",
    help="The model output --loss-fn applies to, or the one output --vjp differentiates.",
)
@click.option(
    "--wrt",
    "wrt",
    multiple=True,
    metavar="NAME",
    help="Differentiate w.r.t. this input, initializer or computed value (repeatable; default: every float "
    "parameter, deduplicated Identity copies untied).",
)
@overwrite_option
@allow_outside_option
@json_flag
def grad(
    model: str,
    out: str,
    loss: str | None,
    loss_fn: str | None,
    vjp: bool,
    model_output: str | None,
    wrt: tuple[str, ...],
    overwrite: bool,
    allow_outside: bool,
    as_json: str | None,
) -> None:
    """Write a model computing the original outputs plus NAME_grad for each --wrt value.

    Choose one of --loss, --loss-fn (with --model-output unless the model has one output) or --vjp.
    The mapping of gradients to outputs is printed and stored in the model's metadata under
    'onnxgraph.gradients'.
    """
    import json

    from onnxgraph.autodiff import METADATA_KEY, build_gradient
    from onnxgraph.pathguard import Output, check_outputs

    if sum([loss is not None, loss_fn is not None, vjp]) != 1:
        raise BadInput("choose exactly one of --loss, --loss-fn or --vjp")
    if model_output is not None and loss is not None:
        raise BadInput("--model-output goes with --loss-fn or --vjp, not --loss")
    check_outputs([Output(out, "-o", model=True), Output(as_json, "--json")], models=[model], overwrite=overwrite)
    with progress(f"building the gradient graph of {model}") as update:
        result = build_gradient(
            model,
            loss=loss,
            loss_fn=loss_fn,
            output=model_output,
            vjp=vjp,
            wrt=list(wrt) or None,
            allow_external_data_outside=allow_outside,
        )
        update(f"checking and writing {out}")
        note = save_checked(result, out, source=model)
    if note:
        click.echo(f"note: {note}", err=True)
    mapping = json.loads(result.metadata_props[METADATA_KEY])
    emit({"output_path": out, "gradients": mapping}, as_json, lambda: _render(out, mapping))


def _render(out: str, mapping: dict[str, str]) -> None:
    from rich.table import Table

    from onnxgraph.cli.output import escape

    table = Table(title=f"gradients in {escape(out)}", title_justify="left")
    table.add_column("value")
    table.add_column("model name")
    for key, name in mapping.items():
        table.add_row(escape(key), escape(name))
    stdout_console().print(table)
