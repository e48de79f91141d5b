"""``onnxgraph grad``: build a model that also computes gradients."""

from __future__ import annotations

import json

import click

from onnxgraph.cli.errors import BadInput
from onnxgraph.cli.options import json_flag, model_argument, overwrite_option, refuse_overwriting_input
from onnxgraph.cli.output import save_checked

LOSS_FUNCTIONS = ("mse", "l1", "cross_entropy", "bce_with_logits", "sum")
"""onnxgraph.autodiff.LOSS_FUNCTIONS, spelled out so --help needs no heavy import (a test keeps the
two equal)."""


@click.command()
@model_argument
@click.option(
    "-o",
    "--output-path",
    "out",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the gradient model.",
)
@click.option("--loss", "loss", metavar="OUTPUT", help="Differentiate this scalar output (seed 1).")
@click.option(
    "--loss-fn",
    "loss_fn",
    type=click.Choice(LOSS_FUNCTIONS),
    help="Append this loss on --output, with a new input 'target'.",
)
@click.option("--vjp", is_flag=True, help="Vector-Jacobian product: each output O gets an input O_grad.")
@click.option(
    "--output",
    "output",
    metavar="NAME",
    help="The output --loss-fn applies to, or the one output --vjp differentiates.",
)
@click.option(
    "--wrt",
    "wrt",
    multiple=True,
    metavar="NAME",
    help="Differentiate w.r.t. this input or initializer (repeatable; default: every float initializer).",
)
@overwrite_option
@json_flag
def grad(
    model: str,
    out: str,
    loss,
    loss_fn,
    vjp: bool,
    output,
    wrt: tuple[str, ...],
    overwrite: bool,
    as_json: bool,
) -> None:
    """Write a model computing the original outputs plus NAME_grad for each --wrt value.

    Choose one of --loss, --loss-fn (with --output unless the model has one output) or --vjp.
    The mapping of gradients to outputs is printed and stored in the model's metadata under
    'onnxgraph.gradients'.
    """
    from onnxgraph.autodiff import METADATA_KEY, build_gradient

    if sum([loss is not None, loss_fn is not None, vjp]) != 1:
        raise BadInput("choose exactly one of --loss, --loss-fn or --vjp")
    if output is not None and loss is not None:
        raise BadInput("--output goes with --loss-fn or --vjp, not --loss")
    refuse_overwriting_input(model, out, overwrite)
    result = build_gradient(model, loss=loss, loss_fn=loss_fn, output=output, vjp=vjp, wrt=list(wrt) or None)
    note = save_checked(result, out, source=model)
    if note:
        click.echo(f"note: {note}", err=True)
    mapping = json.loads(result.metadata_props[METADATA_KEY])
    if as_json:
        click.echo(json.dumps({"output_path": out, "gradients": mapping}, indent=2))
        return
    _render(out, mapping)


def _render(out: str, mapping: dict[str, str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"gradients in {escape(out)}", title_justify="left")
    table.add_column("value")
    table.add_column("model name")
    for key, name in mapping.items():
        table.add_row(escape(key), escape(name))
    Console().print(table)
