"""``onnxgraph reduce``: a planted faulty node is kept, the rest cut away; cut values keep valid types."""

from __future__ import annotations

import json
import sys

import model_builders
import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.debug.checks import CommandCheck, WorkerCheck
from onnxgraph.debug.subgraph import Cutter
from onnxgraph.errors import OnnxGraphError
from onnxgraph.runtime.sessions import create_session
from onnxgraph.shape_inference import inferred_types


def _reduce(*args: str):
    return CliRunner().invoke(cli, ["reduce", *args], catch_exceptions=False)


def test_node_onnxruntime_rejects_is_kept_from_100(tmp_path):
    model = tmp_path / "chain.onnx"
    onnx.save(model_builders.fault_chain(100, 60), model)
    out = tmp_path / "small.onnx"
    result = _reduce(str(model), "--fails-on", "onnxruntime", "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    reduced = onnx.load(out)
    assert len(reduced.graph.node) <= 3
    assert "fault_60" in [n.name for n in reduced.graph.node]
    assert report["original_nodes"] == 102 and report["nodes"] == len(reduced.graph.node)
    assert [s["phase"] for s in report["path"]][0] == "original"
    onnx.checker.check_model(reduced, full_check=True)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        create_session(reduced)


def test_user_command_check(tmp_path):
    model = tmp_path / "chain.onnx"
    onnx.save(model_builders.fault_chain(24, 15), model)
    out = tmp_path / "small.onnx"
    command = f'{sys.executable} -c "import onnxruntime, sys; onnxruntime.InferenceSession(sys.argv[1])" {{model}}'
    result = _reduce(str(model), "--check", command, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "fault_15" in [n.name for n in onnx.load(out).graph.node]
    assert len(onnx.load(out).graph.node) <= 3
    assert "input cut" in result.output and "wrote" in result.output


def test_differs_from_reference_keeps_the_random_node(tmp_path):
    model = tmp_path / "chain.onnx"
    onnx.save(model_builders.fault_chain(40, 37, fault="random"), model)
    out, inputs = tmp_path / "small.onnx", tmp_path / "small.npz"
    result = _reduce(str(model), "--differs-from-reference", "-o", str(out), "--save-inputs", str(inputs))
    assert result.exit_code == 0, result.output
    reduced = onnx.load(out)
    assert "fault_37" in [n.name for n in reduced.graph.node]
    assert len(reduced.graph.node) <= 3
    with np.load(inputs) as feeds:
        assert sorted(feeds.files) == sorted(i.name for i in reduced.graph.input)


def test_check_passing_on_the_original_exits_2(tmp_path):
    model = tmp_path / "chain.onnx"
    onnx.save(model_builders.fault_chain(10, 99), model)
    result = CliRunner().invoke(
        cli, ["reduce", str(model), "--fails-on", "onnxruntime", "-o", str(tmp_path / "o.onnx")]
    )
    assert result.exit_code == 2 and "passes on the original" in result.output
    assert not (tmp_path / "o.onnx").exists()


def test_cut_values_become_typed_inputs_and_shape_values_keep_their_data():
    model = onnxgraph.load(
        onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]>
    g (float[2,6] x) => (float[3,4] y) {
        r = Relu(x)
        shape = Shape(r)
        n = ReduceProd(shape)
        four = Constant<value = int64[1] {4}>()
        k = Div(n, four)
        new_shape = Concat<axis = 0>(k, four)
        y = Reshape(r, new_shape)
    }""")
    )
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 6)).astype(np.float32)}
    from onnxgraph.debug.exposure import known_values

    values, engine = known_values(model, feeds)
    assert engine == "onnxruntime"
    cutter = Cutter(model, inferred_types(model), values)
    reshape = [i for i, n in enumerate(cutter.nodes) if n.op_type == "Reshape"]
    proto, cut_feeds = cutter.build(reshape)
    assert [i.name for i in proto.graph.input] == ["r"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [t.name for t in proto.graph.initializer] == ["new_shape"]
    assert np.array_equal(onnx.numpy_helper.to_array(proto.graph.initializer[0]), [3, 4])
    got = create_session(proto).run(None, cut_feeds)[0]
    assert np.array_equal(got, np.maximum(feeds["x"], 0).reshape(3, 4))


def test_match_must_appear_in_the_failure(tmp_path):
    model = tmp_path / "chain.onnx"
    onnx.save(model_builders.fault_chain(10, 5), model)
    args = [str(model), "--fails-on", "onnxruntime", "-o", str(tmp_path / "o.onnx")]
    other = CliRunner().invoke(cli, ["reduce", *args, "--match", "INVALID_GRAPH"])
    assert other.exit_code == 2 and "passes on the original" in other.output
    same = CliRunner().invoke(cli, ["reduce", *args, "--match", r"NOT_IMPLEMENTED.*Relu"])
    assert same.exit_code == 0 and [n.name for n in onnx.load(tmp_path / "o.onnx").graph.node] == ["fault_5"]


def test_a_command_past_its_timeout_counts_as_failing():
    check = CommandCheck(f"{sys.executable} -c 'import time; time.sleep(5)' {{model}}", timeout=0.5)
    outcome = check(model_builders.fault_chain(2, 99), {})
    assert (outcome.failing, outcome.kind) == (True, "timeout")
    with pytest.raises(OnnxGraphError, match="placeholder"):
        CommandCheck("true")


def test_command_check_writes_inputs_named_like_numpy_savez_arguments(tmp_path):
    # numpy.savez(path, **feeds) raised TypeError for an input named "file"
    feeds = {"file": np.arange(3, dtype=np.float32), "allow_pickle": np.ones((2, 2), np.int64)}
    script = (
        "import sys, numpy; d = numpy.load(sys.argv[1]); "
        "sys.exit(7 if sorted(d.files) == ['allow_pickle', 'file'] and d['file'].tolist() == [0, 1, 2] "
        "and d['allow_pickle'].sum() == 4 else 0)"
    )
    check = CommandCheck(f'{sys.executable} -c "{script}" {{inputs}} {{model}}')
    outcome = check(model_builders.fault_chain(2, 99), feeds)
    assert (outcome.failing, outcome.detail) == (True, "exit 7")


def test_worker_past_its_timeout_counts_as_failing_and_is_replaced():
    model = model_builders.fault_chain(4, 2)
    feeds = {"x": np.zeros((2, 8), np.float32)}
    check = WorkerCheck("onnxruntime", timeout=0.001)  # less than the worker needs to start
    try:
        assert (check(model, feeds).kind, check._process) == ("timeout", None)
        check.timeout = 60
        outcome = check(model, feeds)
        assert (outcome.failing, outcome.kind) == (True, "create") and "NOT_IMPLEMENTED" in outcome.detail
        assert check._process.is_alive()
    finally:
        check.close()
