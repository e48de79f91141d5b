"""Options shared by several commands, as decorator constants."""

from __future__ import annotations

import click

_MODEL_SUFFIXES = (".onnx", ".onnxtxt", ".data")


def _json_destination(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a ``--json FILE`` that is really a model: ``info --json a.onnx`` would take a.onnx as FILE."""
    from onnxgraph.cli.errors import BadInput

    if value not in (None, "-") and value.lower().endswith(_MODEL_SUFFIXES):
        raise BadInput(
            f"--json {value}: looks like a model, not a JSON file (put --json after the model, or name a .json file)"
        )
    return value


def json_output(*aliases: str):
    """The ``--json [FILE]`` option: alone it prints the result as JSON on stdout (and nothing else there),
    with FILE it writes the JSON there (``-``: stdout). The command receives ``as_json``: None, "-" or FILE.

    Args:
        aliases: more spellings of the same option (``--report-json``).
    """
    return click.option(
        "--json",
        *aliases,
        "as_json",
        is_flag=False,
        flag_value="-",
        default=None,
        metavar="[FILE]",
        type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
        callback=_json_destination,
        help="Print the result as JSON on stdout instead of tables, or write it to FILE.",
    )


def examples(*lines: str) -> str:
    """A command's ``epilog``: its --help ends with these example command lines, kept as written."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


json_flag = json_output()
"""``--json [FILE]`` for commands without an alias; see :func:`json_output`."""


def output_option(help: str, *, dest: str = "output", required: bool = True, metavar: str | None = None):
    """``-o/--output FILE``, the file a command writes (the output guard checks it before any work)."""
    return click.option(
        "-o",
        "--output",
        dest,
        required=required,
        type=click.Path(dir_okay=False, path_type=str),
        metavar=metavar,
        help=help,
    )


model_argument = click.argument("model", type=click.Path(dir_okay=True, file_okay=True, path_type=str), metavar="MODEL")
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


inputs_option = click.option(
    "--inputs",
    type=click.Path(dir_okay=False, path_type=str),
    default=None,
    metavar="FILE.npz",
    help="Input arrays by name (default: seeded random inputs).",
)
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")


overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Allow the output to be the input model itself (replaced atomically; never its external-data files).",
)

allow_outside_option = click.option(
    "--allow-external-data-outside",
    "allow_outside",
    is_flag=True,
    help="Read external data outside the model's folder or behind symbolic links (unsafe: the model then "
    "chooses which of your files are read and copied).",
)
