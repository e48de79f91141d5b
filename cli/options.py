"""Options shared by several commands, as decorator constants."""

from __future__ import annotations

import click

json_flag = click.option("--json", "as_json", is_flag=True, help="Print JSON for machines instead of tables.")

model_argument = click.argument(
    "model", type=click.Path(dir_okay=True, file_okay=True, path_type=str), metavar="MODEL"
)
"""A model path; existence and format are checked by the loader so errors name the problem."""


def parse_input_shapes(values: tuple[str, ...]) -> dict[str, list[int]]:
    """``("x=1,3,224,224",)`` -> ``{"x": [1, 3, 224, 224]}``; raises click.BadParameter on bad text."""
    shapes: dict[str, list[int]] = {}
    for text in values:
        name, sep, dims = text.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.split(",")] if dims else []
        except ValueError:
            raise click.BadParameter(f"'{text}' is not NAME=D1,D2,...", param_hint="--input-shape") from None
    return shapes


input_shape_option = click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=D1,D2",
    help="Fix a dynamic input's shape (repeatable).",
)


overwrite_option = click.option(
    "--overwrite", is_flag=True, help="Allow the output to be the input model itself (replaced atomically)."
)


def refuse_overwriting_input(model: str, output: str, overwrite: bool) -> None:
    """Raise a one-line usage error when ``output`` is the input model and ``--overwrite`` is not given."""
    import os

    from onnxgraph.cli.errors import BadInput

    same = os.path.exists(output) and os.path.exists(model) and os.path.samefile(output, model)
    if same and not overwrite:
        raise BadInput(f"{output}: refusing to overwrite the input model (pass --overwrite to allow it)")
