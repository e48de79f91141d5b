"""Chunked runs: a graph run as sessions of a few nodes each gives what one session of the whole graph gives."""

from __future__ import annotations

import model_builders as build
import numpy as np
import onnx
import onnx.parser
import pytest

from onnxgraph.errors import NotChunkable
from onnxgraph.runtime.chunked import CHUNK_NODES_ENV, node_reads, run_chunked
from onnxgraph.runtime.isolated import run_isolated
from onnxgraph.runtime.sessions import create_session


def _whole(proto: onnx.ModelProto, feeds: dict) -> dict:
    session = create_session(proto, optimization="disable")
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _assert_same(proto: onnx.ModelProto, feeds: dict, size: int) -> None:
    expected = _whole(proto, feeds)
    chunked = run_chunked(onnx.ModelProto.FromString(proto.SerializeToString()), feeds, size=size)
    assert list(chunked) == list(expected)
    for name, array in expected.items():
        np.testing.assert_array_equal(chunked[name], array, err_msg=name)


def _x() -> dict:
    return {"x": np.array([-1.5, 0.25, 2.0, -0.0], np.float32)}


@pytest.mark.parametrize("size", [1, 3, 7, 100])
@pytest.mark.parametrize("shape", [build.relu_chain, build.add_chain, build.wide_sum, build.many_initializers])
def test_generated_graphs_run_the_same_in_chunks(shape, size):
    _assert_same(shape(20), _x(), size)


MULTI = """
<ir_version: 8, opset_import: ["" : 17]>
multi (float[2, 3] x, float[3] b) => (float[2, 3] y, float[2, 3] z, float[3] b_out, float[2, 3] x_out) {
    a = Add(x, b)
    m = Mul(a, x)
    t = Tanh(m)
    y = Sub(t, a)
    s = Sigmoid(x)
    z = Mul(s, m)
    b_out = Identity(b)
    x_out = Identity(x)
}
"""


@pytest.mark.parametrize("size", [1, 2, 5])
def test_several_outputs_and_values_read_far_apart(size):
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 3), dtype=np.float32), "b": rng.standard_normal(3, dtype=np.float32)}
    _assert_same(onnx.parser.parse_model(MULTI), feeds, size)


SUBGRAPHS = """
<ir_version: 8, opset_import: ["" : 17]>
control (float[3] x, bool c) => (float[3] y, float[3] w) {
    h = Relu(x)
    k = Neg(x)
    three = Constant<value=int64 {3}>()
    cond = Constant<value=bool {1}>()
    y = If(c) <
        then_branch = then_g () => (float[3] t) { t = Add(h, k) },
        else_branch = else_g () => (float[3] e) { e = Mul(h, h) }
    >
    q = Sigmoid(y)
    w = Loop(three, cond, q) <
        body = body_g (int64 i, bool ci, float[3] acc) => (bool co, float[3] next) {
            co = Identity(ci)
            inner = Add(acc, k)
            next = Mul(inner, h)
        }
    >
}
"""


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("flag", [True, False])
def test_if_and_loop_see_the_outer_values_their_bodies_read(size, flag):
    proto = onnx.parser.parse_model(SUBGRAPHS)
    loop = next(n for n in proto.graph.node if n.op_type == "Loop")
    assert node_reads(loop) == ["three", "cond", "q", "k", "h"]
    feeds = {"x": np.array([-1.0, 0.5, 2.0], np.float32), "c": np.array(flag)}
    _assert_same(proto, feeds, size)


def test_a_sequence_between_chunks_is_refused():
    text = """
    <ir_version: 8, opset_import: ["" : 17]>
    seq (float[3] x) => (float[3] y) {
        s = SequenceConstruct(x, x)
        y = SequenceAt(s, zero)
        zero = Constant<value=int64 {0}>()
    }
    """
    proto = onnx.parser.parse_model(text)
    proto.graph.node.insert(0, proto.graph.node.pop(2))  # Constant first: a topological order
    with pytest.raises(NotChunkable):
        run_chunked(proto, {"x": np.ones(3, np.float32)}, size=1)


def test_each_chunk_is_a_session_of_its_own_nodes(monkeypatch):
    import onnxgraph.runtime.chunked as chunked

    sizes: list[int] = []
    real = chunked.GraphSlicer.payload

    def counted(self, positions, *args, **kwargs):
        positions = list(positions)
        sizes.append(len(positions))
        return real(self, positions, *args, **kwargs)

    monkeypatch.setattr(chunked.GraphSlicer, "payload", counted)
    run_chunked(build.relu_chain(30), _x(), size=4)
    assert sizes == [4] * 7 + [2]  # 30 nodes


def _fan_in(op: str, n: int, **attributes) -> onnx.ModelProto:
    """``y = op(x0 * 1, ..., x0 * n)``: n different values into one node."""
    from onnx import TensorProto, helper, numpy_helper

    scales = [numpy_helper.from_array(np.array(1 + 0.37 * i, np.float32), f"k{i}") for i in range(n)]
    nodes = [helper.make_node("Mul", ["x", f"k{i}"], [f"m{i}"]) for i in range(n)]
    nodes.append(helper.make_node(op, [f"m{i}" for i in range(n)], ["y"], **attributes))
    graph = helper.make_graph(
        nodes,
        "fan_in",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        scales,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("op,attributes", [("Sum", {}), ("Max", {}), ("Min", {}), ("Concat", {"axis": 0})])
@pytest.mark.parametrize("size", [2, 3, 16])
def test_a_node_of_many_inputs_runs_as_a_fold_with_the_same_result(op, attributes, size):
    """No session needs more than about ``size`` inputs (onnxruntime is quadratic in them), bit for bit."""
    feeds = {"x": np.random.default_rng(1).standard_normal(4).astype(np.float32)}
    _assert_same(_fan_in(op, 50, **attributes), feeds, size)


def test_no_chunk_reads_many_more_values_than_its_size(monkeypatch):
    import onnxgraph.runtime.chunked as chunked

    fed: list[int] = []
    real = chunked.GraphSlicer.payload

    def counted(self, positions, outputs, *, inputs, initializers):
        fed.append(len(inputs) + len(list(initializers)))
        return real(self, positions, outputs, inputs=inputs, initializers=initializers)

    monkeypatch.setattr(chunked.GraphSlicer, "payload", counted)
    run_chunked(_fan_in("Sum", 200), _x(), size=10)
    assert max(fed) <= 10 + 1  # a fold step reads its partial result too


def test_run_isolated_chunks_a_graph_over_the_node_threshold(tmp_path, monkeypatch):
    path = str(tmp_path / "wide.onnx")
    onnx.save(build.wide_sum(30), path)
    expected = _whole(build.wide_sum(30), _x())["y"]
    monkeypatch.setenv(CHUNK_NODES_ENV, "4")
    run = run_isolated(path, _x(), optimization="disable", timeout=120)
    assert run.error == ""
    np.testing.assert_array_equal(run.outputs["y"], expected)
