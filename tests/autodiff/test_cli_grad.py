"""``onnxgraph grad``: exit codes, the written model and its gradient mapping."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
from click.testing import CliRunner
from onnx import parser

from onnxgraph.cli import cli
from onnxgraph.runtime.sessions import create_session

MLP = os.path.join(os.path.dirname(__file__), "..", "..", "models", "mlp.onnx")


def _invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_loss_fn_writes_a_runnable_model_and_prints_the_mapping(tmp_path):
    out = tmp_path / "grad.onnx"
    result = _invoke("grad", MLP, "-o", str(out), "--loss-fn", "cross_entropy", "--model-output", "logits", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["gradients"]
    model = onnx.load(str(out))
    stored = json.loads({p.key: p.value for p in model.metadata_props}["onnxgraph.gradients"])
    assert printed == stored
    assert stored["fc0.weight"] == "fc0.weight_grad" and stored["@target"] == "target"
    session = create_session(str(out))
    x = np.random.default_rng(0).standard_normal((8, 784)).astype(np.float32)
    feeds = {"x": x, "target": np.arange(8, dtype=np.int64) % 10}
    outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    assert outputs["fc0.weight_grad"].shape == (256, 784) and np.isfinite(outputs["loss"])


def test_vjp_with_wrt_input_and_table_output(tmp_path):
    out = tmp_path / "vjp.onnx"
    result = _invoke("grad", MLP, "-o", str(out), "--vjp", "--wrt", "x")
    assert result.exit_code == 0, result.output
    assert "logits@upstream" in result.output and "x_grad" in result.output
    names = [i.name for i in onnx.load(str(out)).graph.input]
    assert "logits_grad" in names


def test_usage_errors_exit_2_without_writing(tmp_path):
    out = tmp_path / "never.onnx"
    for args in (
        ["--loss", "logits", "--vjp"],
        [],
        ["--loss-fn", "mse", "--model-output", "missing"],
        ["--loss", "logits"],  # not a scalar
        ["--vjp", "--wrt", "nope"],
    ):
        result = _invoke("grad", MLP, "-o", str(out), *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert not out.exists()


def test_missing_rule_is_a_one_line_error(tmp_path):
    model = parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 18, "custom" : 1]>
    g (float[3] x) => (float[3] y) <float[3] w = {1.0, 2.0, 3.0}> {
        a = Mul(x, w)
        y = custom.Mystery(a)
    }
    """)
    path = tmp_path / "custom.onnx"
    onnx.save(model, str(path))
    result = _invoke("grad", str(path), "-o", str(tmp_path / "out.onnx"), "--vjp")
    assert result.exit_code == 2
    assert "no gradient rule for op 'custom::Mystery'" in result.output


def test_refuses_to_overwrite_the_input(tmp_path):
    path = tmp_path / "mlp.onnx"
    with open(MLP, "rb") as f:
        path.write_bytes(f.read())
    before = path.read_bytes()
    result = _invoke("grad", str(path), "-o", str(path), "--vjp")
    assert result.exit_code == 2 and path.read_bytes() == before
    assert "--overwrite" in result.stderr
    result = _invoke("grad", str(path), "-o", str(path), "--vjp", "--overwrite")
    assert result.exit_code == 0, result.output
    assert "logits_grad" in [i.name for i in onnx.load(str(path)).graph.input]


def test_loss_choices_match_the_library():
    from onnxgraph.autodiff import LOSS_FUNCTIONS
    from onnxgraph.cli.grad import LOSS_FUNCTIONS as CLI_CHOICES

    assert CLI_CHOICES == LOSS_FUNCTIONS


def test_the_previous_spellings_still_work_with_a_warning(tmp_path):
    """``--output-path FILE`` and ``--output NAME`` (with -o or --output-path) are deprecated aliases."""
    for args in (
        ["-o", str(tmp_path / "a.onnx"), "--output", "logits"],
        ["--output=logits", "--output-path", str(tmp_path / "b.onnx")],
        [f"-o{tmp_path / 'c.onnx'}", "--output", "logits"],
    ):
        result = _invoke("grad", MLP, "--loss-fn", "cross_entropy", *args, "--json")
        assert result.exit_code == 0, (args, result.output)
        assert json.loads(result.stdout)["gradients"]["@loss"] == "loss"
        warnings = result.stderr.strip().splitlines()
        assert warnings and all(w.startswith("warning:") and "deprecated" in w for w in warnings)
        assert any("--model-output NAME" in w for w in warnings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx", "c.onnx"]


def test_output_alone_names_the_file(tmp_path):
    out = tmp_path / "g.onnx"
    result = _invoke("grad", MLP, "--output", str(out), "--loss-fn", "cross_entropy", "--model-output", "logits")
    assert result.exit_code == 0 and out.exists() and "deprecated" not in result.output


def test_json_file_keeps_the_table_and_writes_the_mapping(tmp_path):
    out, report = tmp_path / "g.onnx", tmp_path / "g.json"
    result = _invoke("grad", MLP, "-o", str(out), "--vjp", "--json", str(report))
    assert result.exit_code == 0, result.output
    assert "logits@upstream" in result.stdout  # the table
    assert json.loads(report.read_text())["gradients"]["logits@upstream"] == "logits_grad"
