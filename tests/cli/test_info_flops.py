"""``onnxgraph info`` on whole models: MACs against hand counts from the builders' configurations,
shapes resolved through exporter shape chains, lower bounds said as such, and the human units.

The hand counts are the multiply-accumulates of the matrix products and convolutions, computed here
from each builder's arguments (see benchmarks/info_flops.py for the same formulas on real exports:
ResNet-18 at 224x224 is 1,814,073,344 MACs, BERT-base at sequence 128 11,173,625,856).
"""

from __future__ import annotations

import json
import os

import model_builders as build
import numpy as np
import onnx
import onnx.parser
import pytest
from click.testing import CliRunner

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.inspection import analyze


def _info(path: str, *args: str) -> dict:
    result = CliRunner().invoke(cli, ["info", path, "--json", "--top", "0", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _save(tmp_path, proto: onnx.ModelProto, name: str = "m.onnx") -> str:
    path = str(tmp_path / name)
    onnx.save(proto, path)
    return path


def resnet18_macs(image: int, width: int, classes: int) -> int:
    """Conv and classifier MACs of models/build.py's ResNet-18: ``Hout·Wout·Cout·Cin·k²`` per Conv."""
    size = (image + 1) // 2  # 7x7 stride-2 stem, padding 3
    macs = size * size * width * 3 * 49
    size = (size + 1) // 2  # 3x3 stride-2 max pool, padding 1
    c_in = width
    for stage, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for block in range(2):
            stride = 2 if stage and block == 0 else 1
            size = (size + stride - 1) // stride
            macs += size * size * c_out * 9 * (c_in + c_out)  # the block's two 3x3 Convs
            if stride == 2:
                macs += size * size * c_out * c_in  # the 1x1 shortcut
            c_in = c_out
    return macs + c_in * classes


def encoder_macs(batch: int, seq: int, layers: int, hidden: int, ffn: int) -> int:
    """Projections (Q, K, V, output: 4h², FFN: 2hf per token) and attention's Q·Kᵀ and P·V (s²h each)."""
    return batch * layers * (seq * (4 * hidden * hidden + 2 * hidden * ffn) + 2 * seq * seq * hidden)


@pytest.mark.parametrize(("image", "width"), [(224, 64), (64, 8)])
def test_resnet18_counts_every_conv_and_the_classifier(tmp_path, image, width):
    path = _save(tmp_path, build.resnet18(classes=10, image=image, width=width))
    compute = _info(path)["compute"]
    assert compute["macs"] == resnet18_macs(image, width, 10)
    assert compute["complete"] and compute["nodes_unknown"] == 0
    assert compute["flops"] > 2 * compute["macs"]  # BatchNormalization, Relu, pools, Conv-free adds


def test_transformer_counts_attention_between_activations(tmp_path):
    """The default sequence is 128; Q·Kᵀ and P·V (both operands activations) are in the total."""
    layers, hidden, heads = 2, 48, 4  # attention products (4·128²·12 MACs) differ in size from the projections
    path = _save(tmp_path, build.transformer(layers=layers, hidden=hidden, heads=heads))
    info = _info(path)
    assert info["shapes"]["assumed"] == {"input_ids": [1, 128], "attention_mask": [1, 128]}
    assert info["compute"]["macs"] == encoder_macs(1, 128, layers, hidden, 4 * hidden)
    assert info["compute"]["nodes_unknown"] == 0
    activation_matmuls = [
        n for n in info["per_node"] if n["op_type"] == "MatMul" and n["macs"] == heads * 128 * 128 * (hidden // heads)
    ]
    assert len(activation_matmuls) == 2 * layers  # Q·Kᵀ and P·V per layer

    fixed = _info(path, "--input-shape", "input_ids=3,16", "--input-shape", "attention_mask=3,16")
    assert fixed["compute"]["macs"] == encoder_macs(3, 16, layers, hidden, 4 * hidden)
    assert fixed["shapes"]["assumed"] == {}


def test_exporter_expand_chain_is_resolved_by_the_symbolic_fallback(tmp_path):
    """BERT's token-type Expand (models/build.py ``token_type_expand``) loses the batch for onnx
    inference; the shared resolution recovers it with the large weights kept out of memory."""
    path = _save(tmp_path, build.token_type_expand())
    for args, (batch, seq) in (((), (1, 128)), (("--input-shape", "x=1,12,8"), (1, 12))):
        compute = _info(path, *args)["compute"]
        assert compute["nodes_unknown"] == 0, compute["unknown_by_op_type"]
        assert compute["macs"] == batch * seq * 8 * 1100


def test_multihead_attention_export_counts_exactly(tmp_path):
    """``nn.MultiheadAttention`` as TorchScript exports it (torchvision's ViT-B/16, models/build.py
    ``multihead_attention_export``) splits Q, K and V with a Reshape whose target is sliced at
    ``Mod(2, 3)``: evaluated as a constant, every attention shape resolves and the count is exact."""
    from onnxgraph.runtime.sessions import create_session

    tokens, hidden, heads, batch = 6, 8, 2, 3
    proto = build.multihead_attention_export(tokens=tokens, hidden=hidden, heads=heads)
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    x = np.random.default_rng(1).standard_normal((batch, tokens, hidden)).astype(np.float32)
    q, k, v = (
        part.reshape(batch, tokens, heads, -1).transpose(0, 2, 1, 3)
        for part in np.split(x @ weights["in_w"] + weights["in_b"], 3, axis=-1)
    )
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hidden // heads)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    context = (p / p.sum(-1, keepdims=True)) @ v
    expected = context.transpose(0, 2, 1, 3).reshape(x.shape) @ weights["out_w"].T + weights["out_b"]
    (y,) = create_session(proto.SerializeToString()).run(None, {"x": x})
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)  # the builder is multi-head attention

    path = _save(tmp_path, proto)
    for args, b in (((), 1), (("--input-shape", f"x={batch},{tokens},{hidden}"), batch)):
        compute = _info(path, *args)["compute"]
        assert compute["nodes_unknown"] == 0, compute["unknown_by_op_type"]
        assert compute["macs"] == encoder_macs(b, tokens, 1, hidden, 0)


def test_gradient_uses_the_same_shape_resolution(tmp_path):
    """``grad`` builds on the same resolution and its x-gradient is exact: ``upstream · Wᵀ``."""
    from onnxgraph.autodiff import METADATA_KEY, build_gradient
    from onnxgraph.runtime.sessions import create_session

    model = build.token_type_expand()
    grad = build_gradient(model, vjp=True, wrt=["x"])
    mapping = json.loads(grad.metadata_props[METADATA_KEY])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 12, 8)).astype(np.float32)
    upstream = rng.standard_normal((1, 12, 1100)).astype(np.float32)
    session = create_session(grad.to_proto().SerializeToString())
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"x": x, mapping["y@upstream"]: upstream})))
    weight = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "proj_w"))
    np.testing.assert_allclose(outputs[mapping["x"]], upstream @ weight.T, rtol=1e-4, atol=1e-4)


def test_unknown_ops_make_the_total_a_lower_bound(tmp_path):
    text = (
        '<ir_version: 10, opset_import: ["" : 21, "custom" : 1]>\n'
        "g (float[4,8] x, float[8,8] w) => (float[4,8] y) {\n h = custom.Foo(x)\n m = MatMul(h, w)\n y = Relu(x)\n}"
    )
    path = _save(tmp_path, onnx.parser.parse_model(text))
    compute = _info(path)["compute"]
    assert not compute["complete"]
    assert compute["unknown_by_op_type"] == {"custom::Foo": 1, "MatMul": 1}  # MatMul reads Foo's unknown output
    assert compute["flops"] == 4 * 8  # the Relu
    result = CliRunner().invoke(cli, ["info", path])
    assert result.exit_code == 0, result.output
    assert "at least 32 FLOPs, at least 0 MACs (2 nodes not counted" in result.stdout


def test_incomplete_symbolic_inference_writes_no_file_and_keeps_what_it_found(tmp_path, monkeypatch):
    """onnxruntime's ``infer_shapes`` saves ``sym_shape_infer_temp.onnx`` in the working folder when a
    shape stays unknown (here: after a custom op); the shared resolution writes nothing and keeps the
    shapes found before that op (the Expand chain's, which onnx loses)."""
    model = build.token_type_expand()
    model.graph.node.append(onnx.helper.make_node("Foo", ["y"], ["custom_out"], domain="custom"))
    model.graph.output.append(onnx.helper.make_tensor_value_info("custom_out", onnx.TensorProto.FLOAT, None))
    model.opset_import.append(onnx.helper.make_opsetid("custom", 1))
    path = _save(tmp_path, model)
    monkeypatch.chdir(tmp_path)
    compute = _info(path, "--input-shape", "x=1,12,8")["compute"]
    assert os.listdir(tmp_path) == ["m.onnx"]
    assert compute["unknown_by_op_type"] == {"custom::Foo": 1}
    assert compute["macs"] == 12 * 8 * 1100


def test_small_totals_print_with_a_space_and_units(tmp_path):
    text = '<ir_version: 10, opset_import: ["" : 21]>\ng (float[2,3] x) => (float[2,3] y) { y = Relu(x) }'
    path = _save(tmp_path, onnx.parser.parse_model(text))
    result = CliRunner().invoke(cli, ["info", path])
    assert result.exit_code == 0, result.output
    assert "6 FLOPs, 0 MACs" in result.stdout


def test_dimension_names_choose_the_assumed_sizes(tmp_path):
    text = (
        '<ir_version: 10, opset_import: ["" : 21]>\n'
        "g (float[batch_size, seq_len, 4] x, float[N, num_samples] a, float[B, 3, height, width] i) "
        "=> (float[batch_size, seq_len, 4] y) { y = Relu(x) }"
    )
    info = _info(_save(tmp_path, onnx.parser.parse_model(text)))
    assert info["shapes"]["assumed"] == {"x": [1, 128, 4], "a": [1, 16000], "i": [1, 3, 224, 224]}


def test_attention_op_counts_both_products_with_grouped_heads():
    """Attention (opset 23) at [batch, heads, seq, head size]: K and V shared by two query heads."""
    b, hq, hkv, s_q, s_kv, d = 2, 4, 2, 5, 7, 8
    text = (
        '<ir_version: 10, opset_import: ["" : 23]>\n'
        f"g (float[{b},{hq},{s_q},{d}] q, float[{b},{hkv},{s_kv},{d}] k, float[{b},{hkv},{s_kv},{d}] v)"
        f" => (float[{b},{hq},{s_q},{d}] y) {{ y = Attention(q, k, v) }}"
    )
    model = onnxgraph.load(onnx.parser.parse_model(text))
    (node,) = analyze(model)["per_node"]
    scores = b * hq * s_q * s_kv
    assert (node["flops"], node["macs"]) == (2 * scores * 2 * d + 4 * scores, scores * 2 * d)


def test_integer_matmul_counts_like_matmul():
    text = (
        '<ir_version: 10, opset_import: ["" : 21]>\n'
        "g (uint8[3,4] a, int8[4,5] w) => (int32[3,5] y) { y = MatMulInteger(a, w) }"
    )
    (node,) = analyze(onnxgraph.load(onnx.parser.parse_model(text)))["per_node"]
    assert node["macs"] == 3 * 4 * 5


def test_grouped_dilated_conv_transpose():
    """Each input pixel scatters its kernel into its group's output channels only; dilation changes
    the output size (checked against onnxruntime's output), not the MACs."""
    from onnxgraph.runtime.sessions import create_session

    n, c_in, h, w, groups, c_out_per_group, k = 1, 4, 5, 6, 2, 3, 3
    c_out = groups * c_out_per_group
    text = (
        '<ir_version: 10, opset_import: ["" : 21]>\n'
        f"g (float[{n},{c_in},{h},{w}] x, float[{c_in},{c_out_per_group},{k},{k}] wt, float[{c_out}] b)"
        " => (float[?,?,?,?] y) { y = ConvTranspose<group=2, dilations=[2,2], strides=[2,1]>(x, wt, b) }"
    )
    proto = onnx.parser.parse_model(text)
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((n, c_in, h, w)).astype(np.float32),
        "wt": rng.standard_normal((c_in, c_out_per_group, k, k)).astype(np.float32),
        "b": rng.standard_normal(c_out).astype(np.float32),
    }
    (y,) = create_session(proto.SerializeToString()).run(None, feeds)
    (node,) = analyze(onnxgraph.load(proto))["per_node"]
    assert node["outputs"] == ["float32[" + ",".join(map(str, y.shape)) + "]"]
    macs = n * c_in * h * w * c_out_per_group * k * k  # not c_out: a pixel reaches its group's channels only
    assert (node["flops"], node["macs"]) == (2 * macs + y.size, macs)
