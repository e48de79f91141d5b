"""Seeded mutation fuzzing of every command: structurally broken models never crash a command.

Each case takes a small valid model, applies one to three seeded mutations (wrong dims, wrong types,
wrong attribute types, dangling names, huge folded sizes, nested subgraphs, bad external data,
unreleased opsets...) and runs every command on it in-process. Whatever the model, a command:

* exits 0, 1 or 2, with no traceback and no "internal error";
* on exit 2 prints exactly one line on stderr;
* leaves the input untouched and no file behind except its output when it exits 0;
* writes only models that pass onnx.checker.

The default run is 24 cases (about 40 s on 2 cores); ``ONNXGRAPH_FUZZ_CASES=N`` runs N cases.
"""

from __future__ import annotations

import os
import random

import model_builders
import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from onnxgraph.cli import cli
from onnxgraph.runtime.sessions import RUN_BUDGET_ENV

CASES = int(os.environ.get("ONNXGRAPH_FUZZ_CASES", "24"))


def _with_if() -> onnx.ModelProto:
    f = TensorProto.FLOAT

    def branch(tag: str, op: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op, ["x"], [f"b_{tag}"])], tag, [], [helper.make_tensor_value_info(f"b_{tag}", f, [2, 3])]
        )

    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["c"]),
        helper.make_node("If", ["c"], ["h"], then_branch=branch("then", "Relu"), else_branch=branch("else", "Neg")),
        helper.make_node("MatMul", ["h", "w"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        numpy_helper.from_array(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32), "w"),
    ]
    graph = helper.make_graph(
        nodes,
        "with_if",
        [helper.make_tensor_value_info("x", f, [2, 3])],
        [helper.make_tensor_value_info("y", f, [2, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _bases() -> list[onnx.ModelProto]:
    build = model_builders
    return [build.mlp((8, 6, 3)), build.resnet_like(blocks=1, channels=4, image=8), _with_if()]


# -- mutations: each changes a ModelProto in place (rng: random.Random) ------------------------


def m_wrong_dims(model, rng):
    """An initializer of another shape than its readers expect (its data consistent with its dims)."""
    index = rng.randrange(len(model.graph.initializer))
    old = model.graph.initializer[index]
    dims = [d + rng.choice([1, 7]) for d in old.dims] or [3]
    array = np.random.default_rng(rng.randrange(1000)).standard_normal(dims)
    new = numpy_helper.from_array(array.astype(numpy_helper.to_array(old).dtype), old.name)
    model.graph.initializer[index].CopyFrom(new)


def m_wrong_type(model, rng):
    target = rng.choice([*model.graph.initializer, *model.graph.input])
    if isinstance(target, onnx.TensorProto):
        target.data_type = rng.choice([TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16, 0])
    else:
        target.type.tensor_type.elem_type = rng.choice([TensorProto.INT64, TensorProto.BOOL, TensorProto.STRING])


def m_attribute_type(model, rng):
    node = rng.choice(list(model.graph.node))
    node.attribute.append(
        rng.choice(
            [
                helper.make_attribute("axis", "not a number"),
                helper.make_attribute("transB", 1.5),
                helper.make_attribute("pads", [1.0, 2.0]),
                helper.make_attribute("kernel_shape", "3"),
            ]
        )
    )


def m_dangling(model, rng):
    node = rng.choice([n for n in model.graph.node if n.input])
    node.input[rng.randrange(len(node.input))] = "nowhere"


def m_huge_constant(model, rng):
    size = rng.choice([10**10, 10**12, 2**40])
    shape = numpy_helper.from_array(np.array([size], np.int64), "huge_shape")
    model.graph.initializer.append(shape)
    model.graph.node.extend(
        [
            helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]),
            helper.make_node("ReduceSum", ["huge"], ["huge_sum"], keepdims=0),
        ]
    )
    model.graph.output.append(helper.make_tensor_value_info("huge_sum", TensorProto.FLOAT, []))


def m_nested_subgraph(model, rng):
    """Compute the last node inside If branches nested 2 to 6 deep (both branches alike)."""
    depth = rng.randint(2, 6)
    last = model.graph.node[-1]
    out = last.output[0]

    def nodes_for(tag: str, level: int) -> tuple[list[onnx.NodeProto], str]:
        name = f"{out}_{tag}"
        if level == depth:
            inner = onnx.NodeProto()
            inner.CopyFrom(last)
            inner.output[0] = name
            return [inner], name
        branches = []
        for side in "te":
            nodes, result = nodes_for(tag + side, level + 1)
            branches.append(
                helper.make_graph(nodes, f"g_{tag}{side}", [], [helper.make_empty_tensor_value_info(result)])
            )
        return [helper.make_node("If", ["cond_true"], [name], then_branch=branches[0], else_branch=branches[1])], name

    nodes, result = nodes_for("n", 0)
    del model.graph.node[-1]
    model.graph.node.extend([*nodes, helper.make_node("Identity", [result], [out])])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond_true"))


def m_bad_external(model, rng):
    """An initializer whose external data file does not exist.

    Data files of the wrong size, non-integer offsets and files outside the model's folder are
    validated at load by tests/safety (branch ``safety``), not here.
    """
    init = rng.choice(list(model.graph.initializer))
    size = len(numpy_helper.to_array(init).tobytes())
    init.ClearField("raw_data")
    init.ClearField("float_data")
    init.ClearField("int64_data")
    init.data_location = TensorProto.EXTERNAL
    entries = [("location", rng.choice(["missing.data", "w.data"])), ("offset", "0"), ("length", str(size))]
    for key, value in entries:
        entry = init.external_data.add()
        entry.key, entry.value = key, value


def m_opset(model, rng):
    model.opset_import[0].version = rng.choice([1, 6, 999])


def m_duplicate_output(model, rng):
    """Two nodes write the same value."""
    nodes = list(model.graph.node)
    if len(nodes) >= 2:
        nodes[-1].output[0] = nodes[0].output[0]


def m_input_shape(model, rng):
    """The graph input declares another rank or size than the model computes with."""
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if rng.random() < 0.5 and len(dims) > 1:
        del dims[-1]
    else:
        dims[-1].dim_value = rng.choice([1, 5, 100000])


def m_output_type(model, rng):
    """A graph output declares the wrong element type."""
    model.graph.output[0].type.tensor_type.elem_type = rng.choice([TensorProto.INT64, TensorProto.DOUBLE])


MUTATIONS = [
    m_wrong_dims,
    m_wrong_type,
    m_attribute_type,
    m_dangling,
    m_huge_constant,
    m_nested_subgraph,
    m_bad_external,
    m_opset,
    m_duplicate_output,
    m_input_shape,
    m_output_type,
]


CONTROLS = 3
"""The first seeds run the unmutated base models."""


def _case(seed: int) -> tuple[onnx.ModelProto, list[str]]:
    rng = random.Random(seed)
    model = onnx.ModelProto()
    model.CopyFrom(_bases()[seed % 3] if seed < CONTROLS else rng.choice(_bases()))
    applied = []
    # The first cases walk through every mutation once; later ones combine them at random.
    # No mutation for the first seeds (every command must succeed on them: the harness works), then
    # every mutation once, then random combinations.
    if seed < CONTROLS:
        return model, []
    chosen = (
        [MUTATIONS[seed - CONTROLS]] if seed < CONTROLS + len(MUTATIONS) else rng.sample(MUTATIONS, rng.randint(1, 3))
    )
    for mutation in chosen:
        try:
            mutation(model, rng)
            applied.append(mutation.__name__)
        except (IndexError, ValueError):
            continue
    return model, applied


def _commands(out: str, first_output: str) -> dict[str, list[str]]:
    return {
        "info": ["info"],
        "optimize": ["optimize", "-o", out],
        "convert": ["convert", "-o", out, "--ir-version", "8"],
        "fp16": ["convert", "-o", out, "--fp16"],
        "grad": ["grad", "-o", out, "--loss-fn", "sum", "--model-output", first_output],
        "viz": ["viz", "-o", out.replace(".onnx", ".html")],
        "bench": ["bench", "--runs", "1", "--warmup", "0"],
    }


@pytest.mark.parametrize("seed", range(CASES))
def test_every_command_survives_a_mutated_model(tmp_path, monkeypatch, seed):
    monkeypatch.setenv(RUN_BUDGET_ENV, "5")
    model, applied = _case(seed)
    source = tmp_path / "model.onnx"
    payload = model.SerializeToString()
    source.write_bytes(payload)
    first_output = model.graph.output[0].name if model.graph.output else "y"
    for command, args in _commands(str(tmp_path / "out.onnx"), first_output).items():
        result = CliRunner().invoke(cli, [*args, str(source)])
        where = f"seed {seed} {applied} {command}: exit {result.exit_code}\n{result.output}"
        assert result.exit_code in (0, 1, 2), where
        assert applied or result.exit_code == 0, where
        assert result.exception is None or isinstance(result.exception, SystemExit), where
        assert "Traceback" not in result.output and "internal error" not in result.output, where
        if result.exit_code == 2:
            assert len(result.stderr.splitlines()) == 1, where
        assert source.read_bytes() == payload, where
        written = sorted(p.name for p in tmp_path.iterdir() if p.name != source.name)
        if result.exit_code != 0 or command in ("info", "bench"):
            assert written == [], where
            continue
        for name in written:
            if name.endswith(".onnx"):
                onnx.checker.check_model(str(tmp_path / name))
            os.unlink(tmp_path / name)
