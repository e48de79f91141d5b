"""``onnxgraph info``'s costs: FLOPs against hand-derived formulas, memory, --top, --input-shape, --diff."""

from __future__ import annotations

import json

import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

from onnxgraph.cli import cli

HEADER = '<ir_version: 10, opset_import: ["" : 21]>\n'


def _save(tmp_path, text: str, name: str = "m.onnx") -> str:
    path = str(tmp_path / name)
    onnx.save(onnx.parser.parse_model(HEADER + text), path)
    return path


def _info(*args: str) -> dict:
    result = CliRunner().invoke(cli, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _node_flops(info: dict, op_type: str) -> tuple[int, int]:
    node = next(n for n in info["per_node"] if n["op_type"] == op_type)
    return node["flops"], node["macs"]


def test_conv_with_groups_stride_padding_and_bias(tmp_path):
    n, c_in, h, w, c_out, groups, kh, kw = 2, 4, 9, 9, 6, 2, 3, 3
    h_out = w_out = (9 + 2 * 1 - 3) // 2 + 1  # pads 1, stride 2
    path = _save(
        tmp_path,
        f"g (float[{n},{c_in},{h},{w}] x, float[{c_out},{c_in // groups},{kh},{kw}] k,"
        f" float[{c_out}] b) => (float[?,?,?,?] y)"
        " { y = Conv<group=2, strides=[2,2], pads=[1,1,1,1]>(x, k, b) }",
    )
    macs = n * c_out * h_out * w_out * (c_in // groups) * kh * kw
    assert _node_flops(_info(path), "Conv") == (2 * macs + n * c_out * h_out * w_out, macs)


def test_conv_transpose(tmp_path):
    n, c_in, h, w, c_out, kh, kw = 1, 3, 5, 5, 2, 3, 3
    path = _save(
        tmp_path,
        f"g (float[{n},{c_in},{h},{w}] x, float[{c_in},{c_out},{kh},{kw}] k) => (float[?,?,?,?] y)"
        " { y = ConvTranspose(x, k) }",
    )
    macs = n * c_in * h * w * c_out * kh * kw  # every input pixel scatters a Cout x kh x kw window
    assert _node_flops(_info(path), "ConvTranspose") == (2 * macs, macs)


def test_batched_matmul_and_gemm(tmp_path):
    b, m, k, n = 3, 4, 5, 6
    path = _save(
        tmp_path,
        f"g (float[{b},{m},{k}] x, float[{k},{n}] w, float[{k},{m}] a, float[{k},{n}] c,"
        f" float[{n}] bias) => (float[?,?,?] y, float[?,?] z)"
        " {\n y = MatMul(x, w)\n z = Gemm<transA=1>(a, c, bias)\n}",
    )
    info = _info(path)
    assert _node_flops(info, "MatMul") == (2 * b * m * k * n, b * m * k * n)
    assert _node_flops(info, "Gemm") == (2 * m * k * n + m * n, m * k * n)


def test_einsum_decidable_and_not(tmp_path):
    path = _save(
        tmp_path,
        "g (float[2,3,4] x, float[4,5] w, float[2,3] e) => (float[?,?,?] y, float[?] z)"
        ' {\n y = Einsum<equation="bij,jk->bik">(x, w)\n z = Einsum<equation="...j->...">(e)\n}',
    )
    info = _info(path)
    einsums = [n for n in info["per_node"] if n["op_type"] == "Einsum"]
    assert (einsums[0]["flops"], einsums[0]["macs"]) == (2 * 2 * 3 * 4 * 5, 2 * 3 * 4 * 5)
    assert einsums[1]["flops"] is None  # ellipsis: not decidable
    assert info["compute"]["nodes_unknown"] == 1


def test_normalization_pooling_elementwise_and_reductions(tmp_path):
    elements = 2 * 3 * 8 * 8
    fixed = _save(
        tmp_path,
        "g (float[2,3,8,8] x, float[3] s, float[3] b, float[3] m, float[3] v, float[8] ls,"
        " float[3,1,1] s4)"
        " => (float[?,?,?,?] bn, float[?,?,?,?] ln, float[?,?,?,?] mp, float[?,?,?,?] gp,"
        " float[?,?,?,?] add, float[] r) {\n"
        "  bn = BatchNormalization(x, s, b, m, v)\n"
        "  ln = LayerNormalization(x, ls)\n"
        "  mp = MaxPool<kernel_shape=[2,2], strides=[2,2]>(x)\n"
        "  gp = GlobalAveragePool(x)\n"
        "  add = Add(x, s4)\n"
        "  r = ReduceSum<keepdims=0>(x)\n}",
        "fixed.onnx",
    )
    info = _info(fixed)
    assert _node_flops(info, "BatchNormalization") == (2 * elements, 0)
    assert _node_flops(info, "LayerNormalization") == (7 * elements, 0)
    assert _node_flops(info, "MaxPool") == (2 * 3 * 4 * 4 * (2 * 2), 0)
    assert _node_flops(info, "GlobalAveragePool") == (elements, 0)
    assert _node_flops(info, "Add") == (elements, 0)
    assert _node_flops(info, "ReduceSum") == (elements, 0)
    assert info["compute"]["flops"] == sum(n["flops"] for n in info["per_node"])


def test_symbolic_dims_count_as_one_unless_fixed(tmp_path):
    path = _save(tmp_path, "g (float[N,8] x, float[8,4] w) => (float[N,4] y) { y = MatMul(x, w) }")
    assumed = _info(path)
    assert assumed["shapes"]["assumed"] == {"x": [1, 8]}
    assert assumed["compute"]["macs"] == 1 * 8 * 4
    fixed = _info(path, "--input-shape", "x=16,8")
    assert fixed["shapes"] == {"fixed": {"x": [16, 8]}, "assumed": {}}
    assert fixed["compute"]["macs"] == 16 * 8 * 4
    assert fixed["inputs"][0]["shape"] == ["N", 8]  # the interface is reported as declared


def test_activation_memory_total_and_peak(tmp_path):
    # a -> b -> c, each [4,256] float32 = 4 KiB; a dies when b is made, so at most two live at once.
    path = _save(tmp_path, "g (float[4,256] x) => (float[4,256] c) {\n a = Relu(x)\n b = Sigmoid(a)\n c = Neg(b)\n}")
    memory = _info(path)["activations"]
    size = 4 * 256 * 4
    assert memory == {"total_bytes": 3 * size, "peak_bytes": 2 * size, "unknown_values": 0}


def test_top_lists_the_heaviest_nodes_in_order(tmp_path):
    path = _save(
        tmp_path,
        "g (float[8,8] x) => (float[8,8] y) {\n a = Relu(x)\n b = MatMul(a, a)\n c = MatMul(b, b)\n y = Add(c, a)\n}",
    )
    top = _info(path, "--top", "2")["top_nodes"]
    assert [n["op_type"] for n in top] == ["MatMul", "MatMul"]
    assert all(n["flops"] == 2 * 8 * 8 * 8 for n in top)
    assert _info(path, "--top", "0")["top_nodes"] == []


def test_human_output_shows_compute_and_heaviest_nodes(tmp_path):
    path = _save(tmp_path, "g (float[N,8] x, float[8,4] w) => (float[N,4] y) { y = MatMul(x, w) }")
    result = CliRunner().invoke(cli, ["info", path, "--input-shape", "x=1000,8"])
    assert result.exit_code == 0, result.output
    assert "64.00 KFLOPs" in result.stdout  # 2 * 1000 * 8 * 4
    assert "heaviest nodes" in result.stdout


def test_diff_reports_ops_parameters_flops_and_interface(tmp_path):
    a = _save(tmp_path, "g (float[2,8] x, float[8,8] w) => (float[2,8] y) { y = MatMul(x, w) }", "a.onnx")
    b = _save(
        tmp_path,
        "g (float[2,8] x, float[8,8] w, float[8] bias) => (float[2,8] y, float[2,8] r)"
        " {\n m = MatMul(x, w)\n y = Add(m, bias)\n r = Relu(y)\n}",
        "b.onnx",
    )
    d = _info(a, b, "--diff")
    assert d["ops"] == {"Add": [0, 1], "Relu": [0, 1]}
    assert d["flops"] == [2 * 2 * 8 * 8, 2 * 2 * 8 * 8 + 2 * 8 + 2 * 8]
    assert d["inputs"] == {"added": ["bias"], "removed": [], "changed": []}
    assert d["outputs"]["added"] == ["r"]
    assert d["parameters"]["initializers"] == [0, 0]
    result = CliRunner().invoke(cli, ["info", a, b, "--diff"])
    assert result.exit_code == 0 and "inputs: + bias (only in b)" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["A", "B"], "two with --diff"),
        (["A", "--diff"], "exactly two models"),
        (["A", "--input-shape", "nope=1"], "no input 'nope'"),
        (["A", "--input-shape", "x=1,2,3"], "rank 2, not 3"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, message):
    path = _save(tmp_path, "g (float[N,8] x) => (float[N,8] y) { y = Relu(x) }")
    result = CliRunner().invoke(cli, ["info", *[path if a in "AB" else a for a in args]])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stderr.strip().count("\n") == 0


def test_malformed_input_shape_is_a_usage_error(tmp_path):
    path = _save(tmp_path, "g (float[N,8] x) => (float[N,8] y) { y = Relu(x) }")
    result = CliRunner().invoke(cli, ["info", path, "--input-shape", "x"])
    assert result.exit_code == 2 and "'x' is not NAME=D1,D2" in result.stderr
