"""Written models are the verified models: what convert, grad and optimize write passes onnx.checker
and runs on onnxruntime wherever the input does; otherwise exit 1 and nothing is written."""

from __future__ import annotations

import json

import model_builders
import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.convert.verify import HALF_TOLERANCE
from onnxgraph.runtime.compare import compare_arrays
from onnxgraph.runtime.isolated import TEST_CRASH_ENV
from onnxgraph.runtime.sessions import RUN_BUDGET_ENV, create_session
from onnxgraph.runtime.written import ResultCheckFailed, check_before_write

FP16 = onnx.TensorProto.FLOAT16


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def _save(proto: onnx.ModelProto, path) -> str:
    onnx.save(proto, path)
    return str(path)


def _run(path: str, x: np.ndarray) -> np.ndarray:
    session = create_session(path)
    name = session.get_inputs()[0].name
    return session.run(None, {name: x.astype(np.float16 if "16" in session.get_inputs()[0].type else np.float32)})[0]


@pytest.fixture
def zoo_resnet(tmp_path) -> str:
    """The ONNX model zoo's ResNet layout: IR 3, opset 8, every initializer also a graph input."""
    return _save(model_builders.resnet_like(ir_version=3, opset=8, initializers_as_inputs=True), tmp_path / "zoo.onnx")


@pytest.mark.parametrize("keep_io", [False, True])
def test_fp16_of_ir3_model_with_initializer_inputs_loads_on_onnxruntime(zoo_resnet, tmp_path, keep_io):
    out = str(tmp_path / "half.onnx")
    result = _invoke("convert", zoo_resnet, "-o", out, "--fp16", "--json", *(["--keep-io-types"] if keep_io else []))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verification"]["engine"] == "onnxruntime" and report["verification"]["passed"]
    written = onnx.load(out)
    onnx.checker.check_model(written)
    inputs = {i.name: i.type.tensor_type.elem_type for i in written.graph.input}
    # Each weight listed as an input has its initializer's new type (onnxruntime refuses a mismatch).
    for init in written.graph.initializer:
        assert inputs[init.name] == init.data_type == FP16
    assert inputs["x"] == (onnx.TensorProto.FLOAT if keep_io else FP16)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    expected = _run(zoo_resnet, x)
    np.testing.assert_allclose(_run(out, x).astype(np.float32), expected, rtol=0, atol=2e-2 * np.abs(expected).max())


def test_grad_on_ir3_model_lists_initializers_as_inputs(tmp_path):
    source = _save(model_builders.resnet_like(blocks=1, ir_version=3, opset=8), tmp_path / "ir3.onnx")
    assert len(onnx.load(source).graph.input) == 1  # no weight listed: invalid IR 3, yet onnxruntime runs it
    out = str(tmp_path / "grad.onnx")
    result = _invoke("grad", source, "-o", out, "--loss-fn", "sum", "--model-output", "logits")
    assert result.exit_code == 0, result.output
    written = onnx.load(out)
    assert written.ir_version == 3
    onnx.checker.check_model(written)
    assert {i.name for i in written.graph.initializer} <= {i.name for i in written.graph.input}


def test_convert_sorts_nodes_and_lists_initializers_for_ir3(tmp_path):
    text = (
        '<ir_version: 8, opset_import: ["" : 8]>\n'
        "g (float[2,3] x) => (float[2,3] y) <float[3] b = {1, 2, 3}> {\n  y = Relu(h)\n  h = Add(x, b)\n}"
    )
    source = _save(onnx.parser.parse_model(text), tmp_path / "unsorted.onnx")
    out = str(tmp_path / "ir3.onnx")
    result = _invoke("convert", source, "-o", out, "--ir-version", "3")
    assert result.exit_code == 0, result.output
    written = onnx.load(out)
    onnx.checker.check_model(written)
    assert [n.op_type for n in written.graph.node] == ["Add", "Relu"]
    assert [i.name for i in written.graph.input] == ["x", "b"]
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    np.testing.assert_array_equal(create_session(out).run(None, {"x": x})[0], np.maximum(x + [1, 2, 3], 0))


def test_fp16_is_judged_by_the_output_scale(tmp_path):
    # 1,000 logits of size ~10, some near zero: float16 is ~0.05% off overall, yet elements near
    # zero fail an element-wise check with float16's rtol/atol.
    proto = model_builders.resnet_like(blocks=4, channels=16, classes=1000, head_scale=1.0)
    source = _save(proto, tmp_path / "resnet.onnx")
    out = str(tmp_path / "half.onnx")
    result = _invoke("convert", source, "-o", out, "--fp16", "--input-shape", "x=4,3,16,16", "--json")
    assert result.exit_code == 0, result.output
    (logits,) = json.loads(result.stdout)["verification"]["outputs"]
    assert 0 < logits["relative_l2"] < HALF_TOLERANCE[FP16] and logits["passed"]
    x = np.random.default_rng(3).standard_normal((4, 3, 16, 16)).astype(np.float32)
    elementwise = compare_arrays("logits", _run(source, x), _run(out, x).astype(np.float32), tolerance=(1e-2, 1e-3))
    assert elementwise.mismatches > 0, "the model no longer shows what the scale-based check is for"


def test_fp16_failure_says_how_far_off_and_what_the_options_change(tmp_path):
    proto = model_builders.resnet_like(blocks=4, channels=16, head_scale=1.0)
    source = _save(proto, tmp_path / "resnet.onnx")
    out = tmp_path / "half.onnx"
    result = _invoke("convert", source, "-o", str(out), "--fp16", "--tolerance", "1e-6")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("failed: output 'logits' is ") and "limit 0.00%" in line
    for option in ("--keep-io-types", "--op-block-list", "--tolerance", "--no-verify"):
        assert option in line
    assert not out.exists()


def test_onnxruntime_crash_is_named_and_retried_without_nchwc(tmp_path, monkeypatch):
    source = _save(model_builders.resnet_like(blocks=1), tmp_path / "resnet.onnx")
    out = tmp_path / "half.onnx"
    monkeypatch.setenv(TEST_CRASH_ENV, "session")  # the child aborts unless NchwcTransformer is disabled
    result = _invoke("convert", source, "-o", str(out), "--fp16")
    assert result.exit_code == 0, result.output
    assert (
        "note: onnxruntime crashed (SIGABRT) while creating the session; ran again with onnxruntime's "
        "NchwcTransformer disabled"
    ) in result.stderr
    assert create_session(str(out)).get_inputs()[0].name == "x"


def _after_the_reference(monkeypatch, mode: str, **env: str) -> None:
    """Set the crash hook (and ``env``) once convert has run the original (in a child too), for the
    converted model's runs."""
    import onnxgraph.convert.verify

    real = onnxgraph.convert.verify.reference_outputs

    def reference(*args, **kwargs):
        found = real(*args, **kwargs)
        monkeypatch.setenv(TEST_CRASH_ENV, mode)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return found

    monkeypatch.setattr(onnxgraph.convert.verify, "reference_outputs", reference)


def test_onnxruntime_crash_every_time_fails_with_one_line(tmp_path, monkeypatch):
    source = _save(model_builders.resnet_like(blocks=1), tmp_path / "resnet.onnx")
    out = tmp_path / "half.onnx"
    _after_the_reference(monkeypatch, "always")
    result = _invoke("convert", source, "-o", str(out), "--fp16")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "failed: the converted model does not run on onnxruntime: onnxruntime crashed (SIGABRT) while creating "
        "the session (also with NchwcTransformer disabled) (nothing written; --no-verify writes it anyway)"
    ]
    assert not out.exists()


def _tiny(body: str, inits: str = "") -> onnxgraph.Model:
    text = f'<ir_version: 8, opset_import: ["" : 17]>\ng (float[2] x) => (float[2] y) {inits} {{ {body} }}'
    return onnxgraph.load(onnx.parser.parse_model(text).SerializeToString())


def test_result_failing_the_checker_is_refused():
    broken = _tiny("y = Relu(x)")
    broken.graph.nodes[0].op_type = "Gemm"  # Gemm needs at least two inputs
    with pytest.raises(ResultCheckFailed, match="onnx.checker"):
        check_before_write(broken, source=None)


def test_result_onnxruntime_cannot_run_is_refused_when_the_input_runs(tmp_path):
    source = str(tmp_path / "source.onnx")
    onnxgraph.save(_tiny("y = Add(x, b)", "<float[2] b = {1, 2}>"), source)
    result = _tiny("y = Add(x, b)", "<float16[2] b = {1, 2}>")  # valid for the checker, a type error for onnxruntime
    assert check_before_write(result, source=None) == ""
    with pytest.raises(ResultCheckFailed, match="onnxruntime runs the input but not the result"):
        check_before_write(result, source=source)


def test_grad_writes_nothing_when_its_result_does_not_run(tmp_path, monkeypatch):
    import onnxgraph.autodiff

    source = _save(model_builders.resnet_like(blocks=1), tmp_path / "resnet.onnx")
    real = onnxgraph.autodiff.build_gradient

    def broken(*args, **kwargs):
        model = real(*args, **kwargs)
        weight = model.graph.initializers["fc.bias"]
        weight.const_value = onnxgraph.Tensor(weight.const_value.numpy().astype(np.float16), name="fc.bias")
        return model

    monkeypatch.setattr(onnxgraph.autodiff, "build_gradient", broken)
    out = tmp_path / "grad.onnx"
    result = _invoke("grad", source, "-o", str(out), "--loss-fn", "sum", "--model-output", "logits")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"failed: {out}: not written: ")
    assert not out.exists()


def test_a_child_that_hangs_is_stopped_at_its_timeout(tmp_path, monkeypatch):
    from onnxgraph.runtime.isolated import run_isolated

    source = _save(model_builders.resnet_like(blocks=1), tmp_path / "resnet.onnx")
    monkeypatch.setenv(TEST_CRASH_ENV, "hang")
    x = np.zeros((1, 3, 16, 16), np.float32)
    run = run_isolated(source, {"x": x}, timeout=2)
    assert run.outputs is None and not run.crashed
    assert run.error == "onnxruntime did not create and run a session within 2 s"
    monkeypatch.delenv(TEST_CRASH_ENV)
    assert run_isolated(source, {"x": x}).outputs["logits"].shape == (1, 10)


def test_a_slow_optimized_session_falls_back_to_one_without_optimizations(tmp_path, monkeypatch):
    import onnxgraph.convert.verify

    source = _save(model_builders.resnet_like(blocks=1), tmp_path / "resnet.onnx")
    out = tmp_path / "half.onnx"
    monkeypatch.setenv(TEST_CRASH_ENV, "slow-optimized")
    # 8 s: long enough for the fallback child to start and run on a loaded machine
    monkeypatch.setattr(onnxgraph.convert.verify, "OPTIMIZED_SESSION_SECONDS", 8.0)
    result = _invoke("convert", source, "-o", str(out), "--fp16")
    assert result.exit_code == 0, result.output
    assert (
        "note: onnxruntime's optimized session took over 8 s: verified with its graph optimizations off"
        in result.stderr
    )
    assert out.exists()


def test_a_converted_model_no_session_can_be_made_for_in_time_fails_verification(tmp_path, monkeypatch):
    import onnxgraph.convert.verify

    source = _save(model_builders.resnet_like(blocks=1), tmp_path / "resnet.onnx")
    out = tmp_path / "half.onnx"
    # the plain session then gets the check's 2 s
    _after_the_reference(monkeypatch, "hang", **{RUN_BUDGET_ENV: "1"})
    monkeypatch.setattr(onnxgraph.convert.verify, "OPTIMIZED_SESSION_SECONDS", 1.0)
    result = _invoke("convert", source, "-o", str(out), "--fp16")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "failed: the converted model does not run on onnxruntime: onnxruntime did not create and run a session "
        "within 1 s with its graph optimizations, nor within 2 s without them (its session creation grows "
        "quadratically with the number of nodes that can run side by side, and its CPU provider adds one such "
        "Cast per float16 initializer) (nothing written; --no-verify writes it anyway)"
    ]
    assert not out.exists()


def test_the_check_of_an_input_onnxruntime_takes_too_long_to_load_is_skipped_with_a_note(tmp_path, monkeypatch):
    source = str(tmp_path / "source.onnx")
    onnxgraph.save(_tiny("y = Relu(x)"), source)
    monkeypatch.setenv("ONNXGRAPH_RUN_BUDGET", "0.5")
    monkeypatch.setenv(TEST_CRASH_ENV, "hang")  # every child sleeps while "creating the session"
    note = check_before_write(_tiny("y = Relu(x)"), source=source)
    assert note.startswith(
        "not run on onnxruntime: onnxruntime did not create and run a session within 1 s for the input"
    )
    assert "ONNXGRAPH_RUN_BUDGET=SECONDS" in note


def test_the_check_of_a_result_onnxruntime_takes_too_long_to_load_is_skipped_with_a_note(tmp_path, monkeypatch):
    import onnxgraph.runtime.written as written
    from onnxgraph.runtime.inputs import specs_of
    from onnxgraph.runtime.sizing import size_plans

    source = str(tmp_path / "source.onnx")
    onnxgraph.save(_tiny("y = Relu(x)"), source)
    loaded = onnxgraph.load(source)
    plan = next(size_plans(loaded, specs_of(loaded)))  # as if the input ran with the first sizes
    monkeypatch.setattr(written, "_plan_the_source_runs_with", lambda path, shapes: (plan, ""))
    monkeypatch.setenv("ONNXGRAPH_RUN_BUDGET", "0.5")
    monkeypatch.setenv(TEST_CRASH_ENV, "hang")
    note = check_before_write(_tiny("y = Relu(x)"), source=source)
    assert note.startswith(
        "not run on onnxruntime: onnxruntime did not create and run a session within 1 s for the result"
    )


def test_the_input_is_run_in_a_child_process(tmp_path, monkeypatch):
    """A crash of onnxruntime on the input is the child's, not the command's: the result is not run."""
    source = str(tmp_path / "source.onnx")
    onnxgraph.save(_tiny("y = Relu(x)"), source)
    monkeypatch.setenv(TEST_CRASH_ENV, "always")
    assert check_before_write(_tiny("y = Relu(x)"), source=source) == ""
