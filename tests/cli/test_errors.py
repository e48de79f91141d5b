"""Whose fault an error is decides its exit code: bad input exits 2, a bug of ours exits 3."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import click
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper

import onnxgraph
from onnxgraph import errors
from onnxgraph.cli import cli
from onnxgraph.errors import GraphError, MalformedGraphError, ModelLoadError, OnnxGraphError, one_line


def _run_raising(monkeypatch, exc: BaseException, *args: str):
    @click.command("boom")
    def boom() -> None:
        raise exc

    monkeypatch.setitem(cli.commands, "boom", boom)
    return CliRunner().invoke(cli, [*args, "boom"])


def test_a_broken_invariant_is_an_internal_error_not_bad_input(monkeypatch):
    result = _run_raising(monkeypatch, GraphError("cannot remove Node(Add): output 'y' is still used"))
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "internal error: GraphError: cannot remove Node(Add): output 'y' is still used; "
        "please report it; rerun with --debug for the traceback"
    ]


def test_an_unexpected_exception_is_an_internal_error(monkeypatch):
    result = _run_raising(monkeypatch, KeyError("x"))
    assert result.exit_code == 3 and result.stderr.startswith("internal error: KeyError: 'x'; please report it")
    assert "Traceback" not in result.output


def test_debug_shows_the_internal_error_itself(monkeypatch):
    result = _run_raising(monkeypatch, GraphError("broken"), "--debug")
    assert isinstance(result.exception, GraphError) and result.exit_code != 3


def test_a_user_error_exits_2_with_one_line(monkeypatch):
    result = _run_raising(monkeypatch, OnnxGraphError("m.onnx: no such output 'z'\nsecond line"))
    assert result.exit_code == 2
    # our own message stays whole, its line break escaped, so the error is still one line
    assert result.stderr.strip().splitlines() == ["error: m.onnx: no such output 'z'\\nsecond line"]


def test_onnxruntime_rejecting_the_users_model_is_bad_input(monkeypatch):
    import onnxruntime

    try:
        onnxruntime.InferenceSession(b"not a model")
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own exception type
        rejection = exc
    result = _run_raising(monkeypatch, rejection)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: onnxruntime cannot load or run the model: Failed to load model because protobuf parsing failed."
    ]


def _cyclic_model() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [2])
    nodes = [helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"])]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y]))


def test_a_malformed_input_graph_stays_a_user_error(tmp_path):
    path = tmp_path / "cycle.onnx"
    onnx.save(_cyclic_model(), path)
    with pytest.raises(ModelLoadError, match="has a cycle") as caught:
        onnxgraph.load(str(path))
    assert isinstance(caught.value.__cause__, MalformedGraphError)
    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "has a cycle" in result.stderr


def test_internal_and_user_errors_are_separate_families():
    assert issubclass(GraphError, errors.InternalError) and not issubclass(GraphError, OnnxGraphError)
    assert issubclass(MalformedGraphError, OnnxGraphError)


def test_every_exception_class_lives_in_onnxgraph_errors():
    """Public exception classes are defined once, in onnxgraph.errors (re-exports elsewhere are fine)."""
    import onnxgraph.cli
    import onnxgraph.optimizers

    elsewhere = []
    for package in (onnxgraph, onnxgraph.optimizers, onnxgraph.cli):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, obj in vars(module).items():
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ != "onnxgraph.errors"
                    and not name.startswith("_")
                    and not issubclass(obj, click.ClickException)  # the command line's own exit paths
                ):
                    elsewhere.append(f"{module.__name__}.{name}")
    assert elsewhere == []


@pytest.mark.parametrize(
    ("error", "last", "expected"),
    [
        (ValueError("first\nsecond"), False, "first"),
        (ValueError("\n  context\n  reason  \n"), True, "reason"),
        (ValueError(""), False, "ValueError"),
        ("", False, ""),
        (RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad shape\nmore"), False, "bad shape"),
    ],
)
def test_one_line(error, last, expected):
    assert one_line(error, last=last) == expected


def test_old_import_paths_keep_working():
    from onnxgraph.autodiff import GradientError as from_autodiff
    from onnxgraph.autodiff.errors import GradientError as from_module
    from onnxgraph.optimizers.verify import VerificationUnavailable
    from onnxgraph.runtime.providers import ProviderError

    assert from_autodiff is from_module is errors.GradientError
    assert VerificationUnavailable is errors.VerificationUnavailable and ProviderError is errors.ProviderError
