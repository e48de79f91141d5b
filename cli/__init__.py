"""The ``onnxgraph`` command line: a root group and one module per command."""

from __future__ import annotations

import sys

import click

from onnxgraph.cli.artifacts import artifacts
from onnxgraph.cli.bench import bench
from onnxgraph.cli.compare import compare
from onnxgraph.cli.convert import convert
from onnxgraph.cli.errors import CommandGroup, raise_on_termination
from onnxgraph.cli.grad import grad
from onnxgraph.cli.info import info
from onnxgraph.cli.optimize import optimize
from onnxgraph.cli.quantize import quantize
from onnxgraph.cli.reduce import reduce
from onnxgraph.cli.train import train
from onnxgraph.cli.values import values
from onnxgraph.cli.viz import viz


@click.group(cls=CommandGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.version_option(package_name="onnxgraph")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Optimize, differentiate, convert, inspect and benchmark ONNX models.

    Exit codes: 0 success, 1 a verification or comparison failed, 2 bad input or usage,
    3 an internal error (a bug of onnxgraph's: please report it), 130/143/129 interrupted
    (SIGINT/SIGTERM/SIGHUP).
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


cli.add_command(info)
cli.add_command(optimize)
cli.add_command(bench)
cli.add_command(convert)
cli.add_command(viz)
cli.add_command(grad)
cli.add_command(compare)
cli.add_command(reduce)
cli.add_command(values)
cli.add_command(quantize)
cli.add_command(artifacts)
cli.add_command(train)


def main() -> None:
    """Console-script entry point."""
    raise_on_termination()
    sys.exit(cli.main(prog_name="onnxgraph"))
