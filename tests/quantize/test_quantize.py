"""``onnxgraph.quantize``: onnxruntime's quantizer after our optimizer, checked on onnxruntime against float."""

from __future__ import annotations

import os

import model_builders as models
import numpy as np
import onnx
import pytest

import onnxgraph
from onnxgraph.quantize import AccuracyFailed, QuantizeConfig, QuantizeError, quantize
from onnxgraph.quantize.accuracy import measure_accuracy
from onnxgraph.quantize.samples import load_samples
from onnxgraph.runtime.inputs import InputError, InputSpec
from onnxgraph.runtime.sessions import create_session

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TRANSFORMER = os.path.join(ROOT, "models", "transformer.onnx")


def _token_feeds(seed: int, batch: int = 2, seq: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(0, 100, (batch, seq), dtype=np.int64),
        "attention_mask": np.ones((batch, seq), np.int64),
    }


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _run(path, feeds) -> np.ndarray:
    return create_session(os.fspath(path)).run(None, feeds)[0]


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(os.fspath(path), load_external_data=False).graph.node]


def test_dynamic_int8_transformer_quantizes_matmuls_and_stays_close(tmp_path):
    out = tmp_path / "t.int8.onnx"
    report = quantize(TRANSFORMER, out, QuantizeConfig(input_shapes={"input_ids": [1, 16], "attention_mask": [1, 16]}))
    ops = _ops(out)
    assert ops.count("MatMulInteger") == 12 and "DynamicQuantizeLinear" in ops
    model = onnx.load(os.fspath(out))
    weights = {i.name for i in model.graph.initializer}
    assert not [n for n in model.graph.node if n.op_type == "MatMul" and set(n.input) & weights]
    for seed in range(3):
        feeds = _token_feeds(seed)
        assert _cosine(_run(TRANSFORMER, feeds), _run(out, feeds)) > 0.99
    assert report.quantized_ops["MatMulInteger"] == 12
    assert report.accuracy.worst_cosine > 0.99 and report.bytes_after < report.bytes_before / 2


def test_static_qdq_cnn_with_calibration_keeps_top1(tmp_path):
    float_path, out, data = tmp_path / "cnn.onnx", tmp_path / "cnn.qdq.onnx", tmp_path / "calib.npz"
    onnx.save(models.cnn(channels=8, image=16, seed=1), float_path)
    images = np.random.default_rng(0).standard_normal((32, 1, 16, 16)).astype(np.float32)
    np.savez(data, x=images)
    report = quantize(float_path, out, QuantizeConfig(mode="static", calibration=os.fspath(data), per_channel=True))
    ops = _ops(out)
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6 and ops.count("Conv") == 3
    int8_weights = [i for i in onnx.load(os.fspath(out)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4  # three Conv weights and the Gemm weight
    expected, actual = _run(float_path, {"x": images}), _run(out, {"x": images})
    assert _cosine(expected, actual) > 0.99
    assert np.mean(expected.argmax(-1) == actual.argmax(-1)) >= 0.9
    assert report.accuracy.samples == 32 and report.accuracy.source == os.fspath(data)
    assert report.accuracy.outputs[0].top1 == pytest.approx(np.mean(expected.argmax(-1) == actual.argmax(-1)))
    top2 = np.sort(expected, axis=-1)[:, -2:]
    at_risk = top2[:, 1] - top2[:, 0] <= 2 * np.abs(actual - expected).max(axis=-1)
    assert report.accuracy.outputs[0].near_ties == pytest.approx(np.mean(at_risk))


def test_near_ties_count_rows_whose_top2_gap_the_error_can_close():
    expected = [np.array([[5.0, 1.0, 0.0], [2.0, 1.9, 0.0]], np.float32), np.array([[0.0, 3.0, 2.5]], np.float32)]
    # row errors 0.5, 0.2, 0.1 against float gaps 4.0, 0.1, 0.5: only the second is a near tie (0.1 <= 0.4),
    # and its arg-max flips (a flip needs a gap of at most twice the error, so near ties >= 1 - top-1)
    actual = [expected[0] + np.array([[0.5, 0, 0], [0, 0.2, 0]], np.float32), np.array([[0.0, 3.1, 2.5]], np.float32)]
    (out,) = measure_accuracy([{"y": e} for e in expected], [{"y": a} for a in actual], "test").outputs
    assert out.near_ties == pytest.approx(1 / 3) and out.top1 == pytest.approx(2 / 3)
    (ids,) = measure_accuracy([{"y": np.zeros((2, 1), np.float32)}], [{"y": np.ones((2, 1), np.float32)}], "t").outputs
    assert ids.near_ties is None and ids.top1 is None


def test_static_qdq_resnet18_builder_of_the_benchmark(tmp_path):
    """The ResNet-18 that benchmarks/quantize_bench.py measures, narrow and small: it builds, runs, and its
    20 Convs (17 in the blocks and stem, 3 shortcuts) are quantized with their weights in int8."""
    float_path, out, data = tmp_path / "r18.onnx", tmp_path / "r18.qdq.onnx", tmp_path / "calib.npz"
    onnx.save(models.resnet18(classes=10, image=32, width=8), float_path)
    assert _ops(float_path).count("Conv") == 20
    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    np.savez(data, x=images)
    report = quantize(float_path, out, QuantizeConfig(mode="static", calibration=os.fspath(data), per_channel=True))
    assert _ops(out).count("Conv") == 20 and "QuantizeLinear" in _ops(out)
    int8_weights = [i for i in onnx.load(os.fspath(out)).graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 21  # every Conv weight and the Gemm weight
    assert _cosine(_run(float_path, {"x": images}), _run(out, {"x": images})) > 0.98
    assert report.accuracy.samples == 8


def _activation_scales(path) -> dict[str, float]:
    """Scale of each QuantizeLinear of the graph's activations, by the value it quantizes."""
    model = onnx.load(os.fspath(path))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(inits[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def test_calibration_method_sets_the_activation_ranges(tmp_path):
    """Percentile clips the rare extremes MinMax keeps: narrower ranges, so smaller scales on the
    activations (weights are scaled from their own values either way), and the report is complete."""
    float_path, data = tmp_path / "cnn.onnx", tmp_path / "calib.npz"
    onnx.save(models.cnn(channels=8, image=64, seed=1), float_path)
    images = np.random.default_rng(0).standard_normal((32, 1, 64, 64)).astype(np.float32)
    images[0, 0, 0, 0] = 40.0  # one outlier in 131072 pixels: MinMax's range covers it, the 99.999th percentile not
    np.savez(data, x=images)
    scales = {}
    for method in ("minmax", "percentile"):
        out = tmp_path / f"{method}.onnx"
        config = QuantizeConfig(mode="static", calibration=os.fspath(data), calibration_method=method, min_cosine=-1)
        report = quantize(float_path, out, config)
        scales[method] = _activation_scales(out)
        (output,) = report.accuracy.outputs
        assert output.cosine is not None and output.top1 is not None and report.accuracy.samples == 32
    assert scales["minmax"].keys() == scales["percentile"].keys()
    assert scales["percentile"]["x"] < scales["minmax"]["x"] / 2
    assert all(scales["percentile"][k] <= scales["minmax"][k] * 1.0001 for k in scales["minmax"])


def test_static_qoperator_uses_qlinear_ops(tmp_path):
    float_path, out, data = tmp_path / "cnn.onnx", tmp_path / "cnn.q.onnx", tmp_path / "calib.npz"
    onnx.save(models.cnn(channels=8, image=16, seed=1), float_path)
    np.savez(data, x=np.random.default_rng(0).standard_normal((16, 1, 16, 16)).astype(np.float32))
    quantize(float_path, out, QuantizeConfig(mode="static", calibration=os.fspath(data), format="qoperator"))
    assert _ops(out).count("QLinearConv") == 3


@pytest.mark.parametrize("bits", ["int4", "int8"])
def test_weights_only_uses_matmulnbits(tmp_path, bits):
    out = tmp_path / f"t.{bits}.onnx"
    quantize(TRANSFORMER, out, QuantizeConfig(weights_only=bits, min_cosine=0.95))
    nbits = [n for n in onnx.load(os.fspath(out)).graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == 12
    assert {onnx.helper.get_attribute_value(a) for n in nbits for a in n.attribute if a.name == "bits"} == {
        int(bits[3:])
    }
    feeds = _token_feeds(5)
    assert _cosine(_run(TRANSFORMER, feeds), _run(out, feeds)) > (0.95 if bits == "int4" else 0.999)


def test_exclude_keeps_matching_nodes_in_float(tmp_path):
    out = tmp_path / "t.onnx"
    report = quantize(TRANSFORMER, out, QuantizeConfig(exclude=["/MatMul_56", "/MatMul_9?"]))
    assert report.excluded == ["/MatMul_56", "/MatMul_94"]
    nodes = {n.name: n.op_type for n in onnx.load(os.fspath(out)).graph.node}
    assert nodes["/MatMul_56"] == "MatMul" and nodes["/MatMul_94"] == "MatMul"
    assert _ops(out).count("MatMulInteger") == 10


def test_exclude_matching_nothing_is_bad_input(tmp_path):
    with pytest.raises(InputError, match="'nomatch\\*' matches no node"):
        quantize(TRANSFORMER, tmp_path / "t.onnx", QuantizeConfig(exclude=["nomatch*"]))
    assert os.listdir(tmp_path) == []


def test_accuracy_below_min_cosine_writes_nothing(tmp_path):
    out = tmp_path / "t.onnx"
    with pytest.raises(AccuracyFailed, match="last_hidden_state' cosine") as failure:
        quantize(TRANSFORMER, out, QuantizeConfig(weights_only="int4", min_cosine=0.99999))
    assert failure.value.report.accuracy.worst_cosine < 0.99999
    assert os.listdir(tmp_path) == []  # neither the output nor the temporary folder


def test_external_data_model_stays_external(tmp_path):
    source = tmp_path / "in" / "t.onnx"
    source.parent.mkdir()
    onnx.save(
        onnx.load(TRANSFORMER),
        source,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="t.onnx.data",
        size_threshold=0,
    )
    out = tmp_path / "out" / "q.onnx"
    out.parent.mkdir()
    quantize(source, out, QuantizeConfig())
    assert sorted(os.listdir(out.parent)) == ["q.onnx", "q.onnx.data"]
    feeds = _token_feeds(1)
    assert _cosine(_run(TRANSFORMER, feeds), _run(out, feeds)) > 0.99


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"format": "qdq"}, "QOperator format only"),
        ({"mode": "static"}, "needs calibration data"),
        ({"weights_only": "int4", "per_channel": True}, "--per-channel does not apply"),
        ({"min_cosine": 1.5}, "must lie in"),
        ({"mode": "static", "calibration": "c.npz", "calibration_method": "median"}, "unknown calibration method"),
    ],
)
def test_conflicting_settings_fail_before_any_work(tmp_path, settings, message):
    with pytest.raises(QuantizeError, match=message):
        quantize(TRANSFORMER, tmp_path / "t.onnx", QuantizeConfig(**settings))


def test_samples_stack_or_split_by_batch(tmp_path):
    fixed = InputSpec("x", onnx.TensorProto.FLOAT, (2, 3))
    dynamic = InputSpec("y", onnx.TensorProto.FLOAT, ("batch", 3))
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 3), np.float32), y=np.arange(6, dtype=np.float32).reshape(2, 1, 3))
    samples = load_samples(path, [fixed, dynamic])
    assert len(samples) == 2 and samples[0]["x"].shape == (2, 3) and samples[1]["y"].shape == (1, 3)
    np.savez(path, x=np.zeros((4, 3), np.float32), y=np.zeros((3, 3), np.float32))
    with pytest.raises(InputError, match="different numbers of samples"):
        load_samples(path, [fixed, dynamic])
    np.savez(path, x=np.zeros((3, 3), np.float32), y=np.zeros((3, 3), np.float32))
    with pytest.raises(InputError, match="not a multiple of its batch size 2"):
        load_samples(path, [fixed, dynamic])


def test_quantized_model_loads_in_the_ir(tmp_path):
    out = tmp_path / "t.onnx"
    quantize(TRANSFORMER, out, QuantizeConfig(weights_only="int8"))
    assert sum(1 for n in onnxgraph.load(out).all_nodes() if n.op_type == "MatMulNBits") == 12


def test_dynamic_int8_llama_style_decoder(tmp_path):
    float_path, out = tmp_path / "decoder.onnx", tmp_path / "decoder.int8.onnx"
    onnx.save(models.decoder(layers=2, hidden=64, heads=4, intermediate=128, vocab=256), float_path)
    report = quantize(float_path, out, QuantizeConfig(input_shapes={"input_ids": [2, 16]}))
    assert _ops(out).count("MatMulInteger") == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer; lm_head
    ids = {"input_ids": np.random.default_rng(3).integers(0, 256, (1, 24), dtype=np.int64)}
    expected, actual = _run(float_path, ids), _run(out, ids)
    assert _cosine(expected, actual) > 0.99 and report.accuracy.outputs[0].top1 > 0.8
    assert np.mean(expected.argmax(-1) == actual.argmax(-1)) > 0.8


def test_dynamic_quantization_survives_weights_shared_by_gemms(tmp_path):
    # optimization merges the equal layer weights into one initializer read by two Gemm(transB=1);
    # onnxruntime's Gemm->MatMul conversion would transpose it in place once per Gemm: twice, so not at all
    float_path, out = tmp_path / "layers.onnx", tmp_path / "layers.int8.onnx"
    onnx.save(models.repeated_layers(), float_path)
    quantize(float_path, out, QuantizeConfig())
    feeds = {"x": np.random.default_rng(4).standard_normal((8, 64)).astype(np.float32)}
    assert _cosine(_run(float_path, feeds), _run(out, feeds)) > 0.99
    assert _ops(out).count("MatMulInteger") == 3


def test_untying_gemm_weights_leaves_a_shared_sparse_weight_alone():
    # a sparse initializer has no dense data to copy (this raised AttributeError); the quantizer skips it anyway
    from onnx import TensorProto, helper, numpy_helper

    from onnxgraph.quantize.prepare import untie_gemm_weights

    values = numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0, 3], np.int64), "i"), [2, 2])
    gemms = [helper.make_node("Gemm", ["x", "w"], [y], transB=1) for y in ("y1", "y2")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    ys = [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 2]) for y in ("y1", "y2")]
    graph = helper.make_graph(gemms, "g", [x], ys, sparse_initializer=[sparse])
    model = onnxgraph.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert untie_gemm_weights(model) == 0
    assert [n.inputs[1].name for n in model.graph] == ["w", "w"] and not model.graph.initializers


def test_onnxruntime_temporary_files_stay_beside_the_output(tmp_path, monkeypatch):
    import tempfile

    made: list[str] = []
    mkdtemp = tempfile.mkdtemp

    def spy(suffix=None, prefix=None, dir=None):
        made.append(os.path.abspath(dir or tempfile.gettempdir()))
        return mkdtemp(suffix, prefix, dir)

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    float_path, data = tmp_path / "cnn.onnx", tmp_path / "calib.npz"
    out = tmp_path / "out" / "cnn.qdq.onnx"
    out.parent.mkdir()
    onnx.save(models.cnn(channels=8, image=16, seed=1), float_path)
    np.savez(data, x=np.random.default_rng(0).standard_normal((4, 1, 16, 16)).astype(np.float32))
    quantize(float_path, out, QuantizeConfig(mode="static", calibration=os.fspath(data), min_cosine=0.9))
    assert len(made) >= 3  # ours, quant_pre_process's, quantize_static's
    assert all(d.startswith(os.fspath(out.parent)) for d in made), made
    assert os.listdir(out.parent) == ["cnn.qdq.onnx"]
