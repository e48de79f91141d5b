from __future__ import annotations

import onnx

from onnxgraph.optimizers.dce import DeadCodeElimination
from onnxgraph.optimizers.shapes import ShapeSimplification


def test_shape_of_a_static_value_becomes_a_constant(kit):
    model = kit.parse("""
    agraph (float[2, 3] x) => (int64[2] s, int64 n) {
        sh = Shape(x)
        s = Identity(sh)
        sz = Size(x)
        n = Identity(sz)
    }""")
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["shape_of_static"] == 2
    DeadCodeElimination()(model)
    assert kit.ops(model) == {"Identity": 2}


def test_static_dims_of_a_partly_symbolic_shape_fold(kit):
    model = kit.parse("""
    agraph (float[N, 6] x) => (float[N, 2, 3] y)
            <int64 one = {1}, int64[1] zero = {0}, int64[1] minus1 = {-1}, int64[1] two = {2}> {
        s = Shape(x)
        d = Gather <axis = 0> (s, one)
        du = Unsqueeze(d, zero)
        half = Div(du, two)
        shape = Concat <axis = 0> (minus1, two, half)
        y = Reshape(x, shape)
    }""")
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["known_value"] >= 1
    assert kit.ops(model) == {"Reshape": 1}
    assert model.graph.nodes[0].inputs[1].const_value.numpy().tolist() == [-1, 2, 3]


_ATTENTION_RESHAPE = """
agraph (float[batch, seq, 8] x) => (float[batch, seq, 2, 4] y) <int64 i0 = {0}, int64 i1 = {1}, int64[1] ax = {0},
                                                              int64[1] heads = {2}, int64[1] dim = {4}> {
    s = Shape(x)
    b = Gather <axis = 0> (s, i0)
    t = Gather <axis = 0> (s, i1)
    bu = Unsqueeze(b, ax)
    tu = Unsqueeze(t, ax)
    shape = Concat <axis = 0> (bu, tu, heads, dim)
    y = Reshape(x, shape)
}"""


def test_exporter_reshape_chain_becomes_a_constant_with_zero_for_symbolic_dims(kit):
    model = kit.parse(_ATTENTION_RESHAPE)
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["reshape_target"] == 1
    assert kit.ops(model) == {"Reshape": 1}
    target = model.graph.nodes[0].inputs[1].const_value.numpy().tolist()
    assert target == [0, 0, 2, 4]  # never the size used at export
    assert model.graph.outputs[0].shape == ("batch", "seq", 2, 4)
    kit.assert_same(kit.parse(_ATTENTION_RESHAPE).to_proto(), model, shapes={"x": [3, 5, 8]})


def test_one_unmatched_symbol_becomes_minus_one(kit):
    flatten = "f = Mul(bu, tu)\n    flat = Concat <axis = 0> (f, heads, dim)\n    y = Reshape(x, flat)"
    text = _ATTENTION_RESHAPE.replace("y = Reshape(x, shape)", flatten).replace(
        "float[batch, seq, 2, 4] y", "float[M, 2, 4] y"
    )
    model = kit.parse(text)
    kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert model.graph.nodes[0].inputs[1].const_value.numpy().tolist() == [-1, 2, 4]
    kit.assert_same(kit.parse(text).to_proto(), model, shapes={"x": [3, 5, 8]})


def test_reshape_that_needs_two_unknown_dims_stays_dynamic(kit):
    text = _ATTENTION_RESHAPE.replace(
        "shape = Concat <axis = 0> (bu, tu, heads, dim)", "shape = Concat <axis = 0> (tu, bu, heads, dim)"
    ).replace("float[batch, seq, 2, 4] y", "float[seq, batch, 2, 4] y")
    model = kit.parse(text)
    assert not ShapeSimplification()(model).changed


def test_export_time_sizes_in_value_info_never_fix_a_dynamic_dim(kit):
    model = kit.parse("""
    <ir_version: 8, opset_import: ["" : 17, "custom" : 1]>
    agraph (float[batch, 4] x) => (int64[2] s) {
        h = custom.Opaque(x)
        sh = Shape(h)
        s = Identity(sh)
    }""")
    opaque_out = model.graph.nodes[0].outputs[0]
    opaque_out.type = onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [1, 4])  # as traced at export
    model.graph.value_info.append(opaque_out)
    assert not ShapeSimplification()(model).changed
    assert kit.ops(model)["Shape"] == 1


_KEY_TRANSPOSE = """
agraph (float[batch, seq, 2, 4] x) => (float[batch, 2, 4, seq] y)
        <int64[1] minus1 = {-1}, int64[1] dim = {4}, int64[1] m2 = {-2}, int64[1] lo = {-9223372036854775808}> {
    k = Transpose <perm = [0, 2, 1, 3]> (x)
    s = Shape(k)
    sq = Slice(s, m2, minus1)
    lead = Slice(s, lo, m2)
    flat = Concat <axis = 0> (minus1, sq, dim)
    k3 = Reshape(k, flat)
    kt = Transpose <perm = [0, 2, 1]> (k3)
    back = Concat <axis = 0> (lead, dim, sq)
    y = Reshape(kt, back)
}"""


def test_reshape_transpose_reshape_round_trip_is_one_transpose(kit):
    """The dynamo exporter's key transpose: [b,h,s,d] -> [b*h,s,d] -> [b*h,d,s] -> [b,h,d,s]."""
    model = kit.parse(_KEY_TRANSPOSE)
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["transpose_round_trip"] == 1
    assert kit.ops(model) == {"Transpose": 2}
    assert model.graph.nodes[-1].attr("perm") == [0, 1, 3, 2]
    kit.assert_same(kit.parse(_KEY_TRANSPOSE).to_proto(), model, shapes={"x": [3, 5, 2, 4]})


def test_round_trip_with_constant_targets(kit):
    text = """
    agraph (float[batch, 2, 5, 4] x) => (float[batch, 2, 4, 5] y)
            <int64[3] flat = {-1, 5, 4}, int64[4] back = {-1, 2, 4, 5}> {
        k3 = Reshape(x, flat)
        kt = Transpose <perm = [0, 2, 1]> (k3)
        y = Reshape(kt, back)
    }"""
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["transpose_round_trip"] == 1
    assert kit.ops(model) == {"Transpose": 1}


def test_round_trip_that_regroups_the_leading_dims_stays(kit):
    text = """
    agraph (float[batch, 2, 5, 4] x) => (float[batch, 1, 2, 4, 5] y)
            <int64[3] flat = {-1, 5, 4}, int64[5] back = {-1, 1, 2, 4, 5}> {
        k3 = Reshape(x, flat)
        kt = Transpose <perm = [0, 2, 1]> (k3)
        y = Reshape(kt, back)
    }"""
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["transpose_round_trip"] == 0
    assert kit.ops(model) == {"Reshape": 2, "Transpose": 1}


def test_the_same_symbolic_shape_is_computed_once(kit):
    """Each layer of a TorchScript export recomputes ``[batch, sequence, n]`` from its own input."""
    text = """
    agraph (float[batch, seq, 8] x) => (float[batch, seq, 8] y)
            <int64 i0 = {0}, int64 i1 = {1}, int64[1] ax = {0}, int64[1] n = {8}, int64[2] flat = {-1, 8}> {
        a = Relu(x)
        sa = Shape(a)
        ga = Gather <axis = 0> (sa, i0)
        ha = Gather <axis = 0> (sa, i1)
        ba = Unsqueeze(ga, ax)
        ta = Unsqueeze(ha, ax)
        za = Concat <axis = 0> (ba, ta, n)
        fa = Reshape(a, flat)
        ea = Relu(fa)
        ra = Reshape(ea, za)
        b = Neg(ra)
        sb = Shape(b)
        gb = Gather <axis = 0> (sb, i0)
        hb = Gather <axis = 0> (sb, i1)
        bb = Unsqueeze(gb, ax)
        tb = Unsqueeze(hb, ax)
        zb = Concat <axis = 0> (bb, tb, n)
        fb = Reshape(b, flat)
        eb = Relu(fb)
        y = Reshape(eb, zb)
    }"""
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["shared_symbolic"] >= 5  # the second layer's Shape, Gathers, Unsqueezes, Concat
    # Concat(batch, seq, 8) is a's own Shape: both Reshapes read that one
    assert kit.ops(model) == {"Relu": 3, "Neg": 1, "Shape": 1, "Reshape": 4}
    kit.assert_same(kit.parse(text).to_proto(), model, shapes={"x": [3, 5, 8]})


def test_equal_of_dimensions_and_minus_one_is_false(kit):
    """``expand(batch, -1, -1)``: Where(Equal(shape, -1), 1, shape) with a symbolic batch."""
    text = """
    agraph (float[batch, 4] x, float[1, 1, 4] cls) => (float[batch, 1, 4] y)
            <int64 i0 = {0}, int64[1] ax = {0}, int64[1] m = {-1}, int64[3] minus = {-1, -1, -1},
             int64[3] ones = {1, 1, 1}> {
        s = Shape(x)
        g = Gather <axis = 0> (s, i0)
        b = Unsqueeze(g, ax)
        shape = Concat <axis = 0> (b, m, m)
        eq = Equal(shape, minus)
        fixed = Where(eq, ones, shape)
        y = Expand(cls, fixed)
    }"""
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["equal_dims"] == 1
    assert "Equal" not in kit.ops(model)
    where = next(n for n in model.graph if n.op_type == "Where")
    assert where.inputs[0].const_value.numpy().tolist() == [False, True, True]
    kit.assert_same(kit.parse(text).to_proto(), model, shapes={"x": [3, 4]})


_CONV1D = """
agraph (float[batch, seq, 4] x) => (float[batch, seq, 3] y)
        <int64 i0 = {0}, int64 i1 = {1}, int64[1] ax = {0}, int64[1] n = {3}, int64[1] m1 = {-1},
         int64[1] big = {9223372036854775807}, float[4, 3] w = {1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3},
         float[3] b = {0.5, -1, 2}> {
    s = Shape(x)
    g0 = Gather <axis = 0> (s, i0)
    g1 = Gather <axis = 0> (s, i1)
    u0 = Unsqueeze(g0, ax)
    u1 = Unsqueeze(g1, ax)
    size_out = Concat <axis = 0> (u0, u1, n)
    last = Slice(s, m1, big, ax)
    flat_shape = Concat <axis = 0> (m1, last)
    flat = Reshape(x, flat_shape)
    h = Gemm(flat, w, b)
    y = Reshape(h, size_out)
}"""


def test_gemm_between_flatten_and_unflatten_is_matmul_add(kit):
    """GPT-2's Conv1D as the TorchScript exporter writes it."""
    model = kit.parse(_CONV1D)
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["gemm_round_trip"] == 1
    assert kit.ops(model) == {"MatMul": 1, "Add": 1}
    assert model.graph.outputs[0].shape == ("batch", "seq", 3)
    kit.assert_same(kit.parse(_CONV1D).to_proto(), model, shapes={"x": [3, 5, 4]})


def test_gemm_with_transposed_private_weight_round_trip(kit):
    text = _CONV1D.replace("h = Gemm(flat, w, b)", "h = Gemm <transB = 1> (flat, w, b)").replace(
        "float[4, 3] w", "float[3, 4] w"
    )
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["gemm_round_trip"] == 1
    kit.assert_same(kit.parse(text).to_proto(), model, shapes={"x": [2, 3, 4]})


def test_gemm_round_trip_to_another_shape_stays(kit):
    text = _CONV1D.replace("size_out = Concat <axis = 0> (u0, u1, n)", "size_out = Concat <axis = 0> (u1, u0, n)")
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["gemm_round_trip"] == 0 and kit.ops(model)["Gemm"] == 1


def test_reshape_to_its_own_symbolic_shape_goes_even_with_allowzero(kit):
    """The dynamo exporter's ``input_ids.view(-1, input_ids.size(1))``."""
    text = """
    agraph (float[batch, seq] x) => (float[batch, seq] y) <int64[1] m1 = {-1}> {
        s = Shape <start = 1, end = 2> (x)
        target = Concat <axis = 0> (m1, s)
        v = Reshape <allowzero = 1> (x, target)
        y = Relu(v)
    }"""
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    DeadCodeElimination()(model)
    assert stats["reshape_to_own_shape"] == 1
    assert kit.ops(model) == {"Relu": 1}
    kit.assert_same(kit.parse(text).to_proto(), model, shapes={"x": [3, 5]})


def test_reshape_that_swaps_two_symbolic_dims_stays(kit):
    text = """
    agraph (float[batch, seq] x) => (float[seq, batch] y) <int64[1] m1 = {-1}> {
        s = Shape <start = 0, end = 1> (x)
        target = Concat <axis = 0> (m1, s)
        y = Reshape <allowzero = 1> (x, target)
    }"""
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["reshape_to_own_shape"] == 0 and kit.ops(model)["Reshape"] == 1


def test_gemm_round_trip_when_inference_lost_one_symbol(kit):
    """x's second dim is one onnx inference could not tie to ``seq`` (a Range's length in GPT-2):
    with ``batch`` matching, the element count fixes it."""
    text = _CONV1D.replace("(float[batch, seq, 4] x)", "(float[batch, n_positions, 4] x, int64[batch, seq] ids)")
    text = text.replace("s = Shape(x)", "s = Shape(ids)\n    sx = Shape(x)")
    text = text.replace("last = Slice(s,", "last = Slice(sx,")
    model = kit.parse(text)
    stats = kit.apply(ShapeSimplification(), model)
    assert stats["gemm_round_trip"] == 1
    kit.assert_same(kit.parse(text).to_proto(), model, shapes={"x": [3, 5, 4], "ids": [3, 5]})
