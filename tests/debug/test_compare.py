"""``onnxgraph compare``: planted faults are found at the right node; exit codes; viz reads --node-data."""

from __future__ import annotations

import json

import model_builders
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

import onnxgraph
from onnxgraph import renames
from onnxgraph.cli import cli
from onnxgraph.optimizers import optimize
from onnxgraph.runtime.providers import cuda_status


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def optimized_pair(tmp_path):
    """The bundled-style transformer block and its optimized version (fusions rename values)."""
    original = model_builders.transformer_block()
    a = tmp_path / "a.onnx"
    onnx.save(original, a)
    model, report = optimize(str(a))
    assert report.ok
    b = tmp_path / "b.onnx"
    onnxgraph.save(model, b)
    return a, b


def test_optimized_model_matches_and_exit_0(optimized_pair):
    a, b = optimized_pair
    result = _run("compare", str(a), str(b), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] and not data["origins"]
    assert data["compared"] >= 0.8 * data["total"]
    assert all(v["passed"] for v in data["values"])


def test_perturbed_weight_in_optimized_model_is_named(optimized_pair, tmp_path):
    a, b = optimized_pair
    model = onnx.load(b)
    graph = model.graph
    # the first MatMul-like node of the second half of the model that reads a weight
    readers = [
        n
        for n in graph.node
        if n.op_type in ("MatMul", "Gemm") and any(i in {t.name for t in graph.initializer} for i in n.input)
    ]
    target = readers[len(readers) // 2]
    weight_name = next(i for i in target.input if i in {t.name for t in graph.initializer})
    tensor = next(t for t in graph.initializer if t.name == weight_name)
    array = numpy_helper.to_array(tensor).copy()
    array.flat[0] += 5.0
    tensor.CopyFrom(numpy_helper.from_array(array, weight_name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    node_data = tmp_path / "err.json"
    result = _run("compare", str(a), str(broken), "--json", "--node-data", str(node_data))
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert not data["passed"]
    first = data["origins"][0]
    assert first["node_b"] == target.name, (first, target.name)
    # viz colours the graph by the error: the perturbed node gets the largest figure
    figures = json.loads(node_data.read_text())
    assert figures["values"][target.name] == max(figures["values"].values())
    dot = tmp_path / "err.dot"
    assert _run("viz", str(broken), "-o", str(dot), "--node-data", str(node_data)).exit_code == 0
    table = _run("compare", str(a), str(broken))
    assert table.exit_code == 1
    first_row = next(line for line in table.stdout.splitlines() if "FIRST" in line)
    assert target.name in first_row
    assert f"first divergence at '{first['name']}'" in table.stderr


def test_fp16_overflow_names_the_overflowing_node(tmp_path):
    a = tmp_path / "ln.onnx"
    onnx.save(model_builders.decomposed_layernorm(), a)
    b = tmp_path / "ln16.onnx"
    # convert keeps a square read by float32 reductions in float32; with ReduceMean off the block list
    # the Pow runs in float16 and overflows, as converters that keep only the reductions in float32 make it
    assert _run("convert", str(a), "-o", str(b), "--fp16", "--op-block-list", "Range").exit_code == 0
    result = _run("compare", str(a), str(b), "--json")
    data = json.loads(result.stdout)
    first = data["origins"][0]
    assert (first["name"], first["op_a"], first["node_b"]) == ("sq", "Pow", "ln/pow")
    assert first["max_abs"] == "inf"
    before = [v for v in data["values"] if v["name"] in ("h", "mean", "dev")]
    assert len(before) == 3 and not any(v["diverged"] for v in before)
    # onnxruntime's CPU provider computes float16 Pow/Add in float32 internally, so the plain run's
    # output may still match there; the exit code follows the outputs
    assert result.exit_code == (0 if data["passed"] else 1)


def test_hand_made_float16_value_past_65504(tmp_path):
    """A float16 model whose Cast overflows; the value is also an output, so onnxruntime cannot fold the Cast
    away (its CPU provider runs float16 Mul in float32, between Casts it then removes in pairs)."""
    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[2,4] x) => (float[2,4] y, float16[2,4] h) {
        big = Mul(x, k)
        h = Cast<to = 10>(big)
        small = Mul(h, s)
        y = Cast<to = 1>(small)
    }"""
    graph = onnx.parser.parse_model(text)
    graph.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e5, np.float32), "k"),
            numpy_helper.from_array(np.array(1e-5, np.float16), "s"),
        ]
    )
    reference = onnx.parser.parse_model(
        text.replace("Cast<to = 10>", "Identity").replace("Cast<to = 1>", "Identity").replace("float16[", "float[")
    )
    reference.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1e5, np.float32), "k"),
            numpy_helper.from_array(np.array(1e-5, np.float32), "s"),
        ]
    )
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(reference, a)
    onnx.save(graph, b)
    result = _run("compare", str(a), str(b), "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert [(v["name"], v["op_b"]) for v in data["origins"]] == [("h", "Cast")]


def test_renamed_values_are_matched_through_the_metadata(tmp_path):
    a = tmp_path / "a.onnx"
    onnx.save(
        onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]> g (float[2,3] x) => (float[2,3] y) {
        r = Relu(x)
        kept = Identity(r)
        twin = Relu(x)
        s = Add(kept, twin)
        t = Identity(s)
        y = Exp(t)
    }"""),
        a,
    )
    model, _ = optimize(str(a))
    assert renames.read(model) == {"kept": "r", "twin": "r", "t": "s"}
    b = tmp_path / "b.onnx"
    onnxgraph.save(model, b)
    data = json.loads(_run("compare", str(a), str(b), "--json").output)
    assert {(v["name"], v["name_b"]) for v in data["values"]} == {
        ("r", "r"),
        ("kept", "r"),
        ("twin", "r"),
        ("s", "s"),
        ("t", "s"),
        ("y", "y"),
    }
    assert data["unmatched"] == 0


def test_same_model_two_providers(tmp_path):
    a = tmp_path / "a.onnx"
    onnx.save(model_builders.decomposed_layernorm(gain=1.0), a)
    result = _run("compare", str(a), "--provider", "cpu", "--against", "cpu", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["compared"] == data["total"] == 11
    assert all(v["max_abs"] == 0 for v in data["values"])


@pytest.mark.skipif(cuda_status().usable, reason="CUDA is usable here: the unavailable case cannot be shown")
def test_cuda_unavailable_is_one_line_exit_2(tmp_path):
    a = tmp_path / "a.onnx"
    onnx.save(model_builders.decomposed_layernorm(gain=1.0), a)
    result = CliRunner().invoke(cli, ["compare", str(a), "--provider", "cpu", "--against", "cuda"])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "cuda" in result.output.lower()


def test_model_onnxruntime_rejects_is_one_line_exit_2(tmp_path):
    a, b = tmp_path / "a.onnx", tmp_path / "rejected.onnx"
    onnx.save(model_builders.fault_chain(6, 99), a)
    onnx.save(model_builders.fault_chain(6, 3), b)  # Relu on int16: no onnxruntime kernel
    result = CliRunner().invoke(cli, ["compare", str(a), str(b)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and f"{b}: onnxruntime cannot run it" in result.output
    values = CliRunner().invoke(cli, ["values", str(b), "-o", str(tmp_path / "v.npz")])
    assert values.exit_code == 2 and f"{b}: onnxruntime cannot run it" in values.output
    assert not (tmp_path / "v.npz").exists()


def test_bad_usage_exits_2(tmp_path):
    a = tmp_path / "a.onnx"
    onnx.save(model_builders.decomposed_layernorm(gain=1.0), a)
    assert CliRunner().invoke(cli, ["compare", str(a)]).exit_code == 2
    missing = CliRunner().invoke(cli, ["compare", str(a), str(tmp_path / "nope.onnx")])
    assert missing.exit_code == 2 and "nope.onnx" in missing.output


def test_wrongly_folded_constant_is_named(tmp_path):
    """A value the optimizer folded into an initializer is compared with that initializer."""
    a = tmp_path / "a.onnx"
    onnx.save(
        onnx.parser.parse_model("""<ir_version: 8, opset_import: ["" : 17]> g (float[4] x) => (float[4] y) {
        two = Constant<value = float[4] {1, 2, 3, 4}>()
        scale = Mul(two, two)
        y = Add(x, scale)
    }"""),
        a,
    )
    model, _ = optimize(str(a))
    folded = renames.read(model).get("scale", "scale")  # the folded constant may keep the value's name
    assert folded in model.graph.initializers and [n.op_type for n in model.graph] == ["Add"]
    proto = model.to_proto()
    tensor = next(t for t in proto.graph.initializer if t.name == folded)
    tensor.CopyFrom(numpy_helper.from_array(np.array([1, 4, 9, 17], np.float32), folded))  # 16 folded as 17
    b = tmp_path / "b.onnx"
    onnx.save(proto, b)
    result = _run("compare", str(a), str(b), "--json")
    assert result.exit_code == 1
    first = json.loads(result.stdout)["origins"][0]
    assert (first["name"], first["op_a"], first["name_b"], first["op_b"], first["max_abs"]) == (
        "scale",
        "Mul",
        folded,
        "initializer",
        1.0,
    )
