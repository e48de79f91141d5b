"""Everything a ModelProto can hold survives import -> export unchanged, and models still run."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, parser

import onnxgraph
from onnxgraph import AttrType, Graph, SparseTensor, Tensor
from onnxgraph.runtime.sessions import create_session

F = TensorProto.FLOAT


def _round_trip(model: onnx.ModelProto) -> onnx.ModelProto:
    exported = onnxgraph.from_proto(model).to_proto()
    assert exported.SerializeToString(deterministic=True) == model.SerializeToString(deterministic=True)
    return exported


def _assert_same_outputs(original: onnx.ModelProto, exported: onnx.ModelProto, feeds: dict) -> None:
    expected = create_session(original).run(None, feeds)
    actual = create_session(exported).run(None, feeds)
    for e, a in zip(expected, actual):
        np.testing.assert_array_equal(e, a)


def test_loop_body_reads_outer_values():
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[3] x, int64 n) => (float[3] acc_out) {
            scale = Constant<value = float[3] {0.5, 1.0, 2.0}>()
            start = Identity(x)
            acc_out = Loop(n, "", start) <
                body = body (int64 i, bool c, float[3] acc) => (bool c_out, float[3] acc_next) {
                c_out = Identity(c)
                prod = Mul(acc, scale)
                acc_next = Add(prod, x)
            }>
        }"""
    )
    exported = _round_trip(model)
    graph = onnxgraph.from_proto(model).graph
    loop = next(n for n in graph if n.op_type == "Loop")
    assert {v.name for v in loop.implicit_inputs()} == {"scale", "x"}
    assert loop.inputs[1] is None  # omitted optional condition
    _assert_same_outputs(model, exported, {"x": np.array([1, 2, 3], np.float32), "n": np.array(3, np.int64)})


def test_scan_body_reads_outer_values():
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[2] init, float[4, 2] xs, float[2] bias) => (float[2] final, float[4, 2] ys) {
            final, ys = Scan(init, xs) <
                num_scan_inputs = 1,
                body = body (float[2] state, float[2] x) => (float[2] next, float[2] y) {
                s = Add(state, x)
                next = Add(s, bias)
                y = Identity(next)
            }>
        }"""
    )
    exported = _round_trip(model)
    rng = np.random.default_rng(0)
    feeds = {
        "init": rng.standard_normal(2).astype(np.float32),
        "xs": rng.standard_normal((4, 2)).astype(np.float32),
        "bias": rng.standard_normal(2).astype(np.float32),
    }
    _assert_same_outputs(model, exported, feeds)


def test_nested_if_reads_values_two_scopes_out():
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (bool a, bool b, float[2] x) => (float[2] y) {
            y = If(a) <
                then_branch = t1 () => (float[2] o1) {
                    o1 = If(b) <
                        then_branch = t2 () => (float[2] o2) { o2 = Neg(x) },
                        else_branch = e2 () => (float[2] o3) { o3 = Abs(x) }
                    >
                },
                else_branch = e1 () => (float[2] o4) { o4 = Identity(x) }
            >
        }"""
    )
    exported = _round_trip(model)
    x = onnxgraph.from_proto(model).graph.inputs[2]
    assert len(x.uses()) == 3 and all(n.graph.parent_graph is not None for n, _ in x.uses())
    for a in (True, False):
        for b in (True, False):
            feeds = {"a": np.array(a), "b": np.array(b), "x": np.array([-1.0, 2.0], np.float32)}
            _assert_same_outputs(model, exported, feeds)


def test_model_local_function_with_attribute_reference_and_default():
    model = parser.parse_model(
        """<ir_version: 8, opset_import: ["" : 17, "custom" : 1]>
        g (float[2, 3] x) => (float[2, 3] y) {
            y = custom.ScaledLeaky<alpha = 0.25>(x)
        }
        <domain: "custom", opset_import: ["" : 17]>
        ScaledLeaky<alpha, beta: float = 3.0>(t) => (u) {
            leaky = LeakyRelu<alpha: float = @alpha>(t)
            three = Constant<value_float: float = @beta>()
            u = Mul(leaky, three)
        }"""
    )
    exported = _round_trip(model)
    loaded = onnxgraph.from_proto(model)
    function = loaded.functions[("custom", "ScaledLeaky", "")]
    leaky = next(n for n in function.graph if n.op_type == "LeakyRelu")
    assert leaky.attributes["alpha"].ref_attr_name == "alpha"
    assert function.attributes == ["alpha"]
    assert function.attribute_defaults["beta"].value == 3.0
    _assert_same_outputs(model, exported, {"x": np.array([[-4, 1, 2], [3, -8, 0]], np.float32)})


def _kitchen_sink() -> onnx.ModelProto:
    """A model that uses every attribute type, odd value types and every model-level field."""
    rng = np.random.default_rng(0)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "sp"),
        numpy_helper.from_array(np.array([1, 5], np.int64), "sp_idx"),
        [2, 3],
    )
    seq_type = helper.make_sequence_type_proto(helper.make_tensor_type_proto(F, ["n"]))
    map_type = helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(F, []))
    optional_type = helper.make_optional_type_proto(helper.make_tensor_type_proto(F, [2]))
    x_type = helper.make_tensor_type_proto(F, ["batch", 3])
    x_type.denotation = "TENSOR"
    x_type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    sub = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["s_out"])], "sub", [], [helper.make_tensor_value_info("s_out", F, None)]
    )
    custom = helper.make_node(
        "Fancy",
        ["x", "", "w"],
        ["c_out", ""],
        domain="com.vendor",
        name="fancy",
        f=0.5,
        i=7,
        s="text",
        t=numpy_helper.from_array(np.arange(3, dtype=np.int32), "t_attr"),
        g=sub,
        sparse_tensor=sparse,
        tp=seq_type,
        floats=[1.0, 2.5],
        ints=[1, -2],
        strings=["a", "b"],
        tensors=[numpy_helper.from_array(np.ones(2, np.float16), "ta")],
        graphs=[sub, sub],
        sparse_tensors=[sparse],
        type_protos=[map_type, optional_type],
    )
    custom.metadata_props.add(key="origin", value="test")
    relu = helper.make_node("Relu", ["x"], ["y"], doc_string="activation")
    w = numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float32), "w")
    big_endian_free = helper.make_tensor("typed", F, [2], [1.5, -2.0])  # float_data, not raw_data
    graph = helper.make_graph(
        [custom, relu],
        "sink",
        [
            helper.make_value_info("x", x_type),
            helper.make_value_info("seq_in", seq_type),
            helper.make_value_info("map_in", map_type),
            helper.make_value_info("opt_in", optional_type),
        ],
        [helper.make_tensor_value_info("y", F, ["batch", 3]), helper.make_tensor_value_info("c_out", F, None)],
        [w, big_endian_free],
        doc_string="graph doc",
        value_info=[helper.make_tensor_value_info("unused_annotation", F, [1])],
        sparse_initializer=[
            helper.make_sparse_tensor(
                numpy_helper.from_array(np.array([3.0], np.float32), "sparse_init"),
                numpy_helper.from_array(np.array([0], np.int64)),
                [4],
            )
        ],
    )
    annotation = graph.quantization_annotation.add(tensor_name="y")
    annotation.quant_parameter_tensor_names.add(key="SCALE_TENSOR", value="w")
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.vendor", 3)],
        producer_name="tests",
        producer_version="1.2",
        domain="org.example",
        model_version=42,
        doc_string="model doc",
    )
    model.ir_version = 9
    helper.set_model_props(model, {"author": "onnxgraph", "license": "none"})
    training = model.training_info.add()
    training.algorithm.name = "train"
    training.algorithm.node.add(op_type="Identity", input=["w"], output=["w2"])
    return model


def test_every_field_and_attribute_type_round_trips():
    model = _kitchen_sink()
    _round_trip(model)
    loaded = onnxgraph.from_proto(model)
    fancy = next(n for n in loaded.graph if n.op_type == "Fancy")
    kinds = {name: a.type for name, a in fancy.attributes.items()}
    assert kinds == {
        "f": AttrType.FLOAT,
        "i": AttrType.INT,
        "s": AttrType.STRING,
        "t": AttrType.TENSOR,
        "g": AttrType.GRAPH,
        "sparse_tensor": AttrType.SPARSE_TENSOR,
        "tp": AttrType.TYPE_PROTO,
        "floats": AttrType.FLOATS,
        "ints": AttrType.INTS,
        "strings": AttrType.STRINGS,
        "tensors": AttrType.TENSORS,
        "graphs": AttrType.GRAPHS,
        "sparse_tensors": AttrType.SPARSE_TENSORS,
        "type_protos": AttrType.TYPE_PROTOS,
    }
    assert fancy.attr("s") == "text" and fancy.attr("ints") == [1, -2]
    assert isinstance(fancy.attr("t"), Tensor) and fancy.attr("t").numpy().tolist() == [0, 1, 2]
    assert isinstance(fancy.attr("g"), Graph) and fancy.attr("g").parent_node is fancy
    assert isinstance(fancy.attr("sparse_tensor"), SparseTensor)
    assert fancy.inputs[1] is None and fancy.outputs[1].name == ""
    assert fancy.domain == "com.vendor" and fancy.metadata_props == {"origin": "test"}
    x = loaded.graph.inputs[0]
    assert x.shape == ("batch", 3)
    assert loaded.graph.inputs[1].type.HasField("sequence_type")
    assert loaded.graph.initializers["typed"].const_value.numpy().tolist() == [1.5, -2.0]
    assert "sparse_init" in loaded.graph.sparse_initializers
    assert loaded.metadata_props == {"author": "onnxgraph", "license": "none"}
    assert loaded.model_version == 42 and loaded.ir_version == 9
    assert len(loaded.training_info) == 1


def test_ir_version_is_never_raised_on_export():
    model = parser.parse_model(
        """<ir_version: 7, opset_import: ["" : 13]>
        g (float[2] x) => (float[2] y) { y = Relu(x) }"""
    )
    assert onnxgraph.from_proto(model).to_proto().ir_version == 7
