from __future__ import annotations

from onnxgraph.optimizers.dce import DeadCodeElimination


def test_dead_chains_initializers_and_value_info_go(kit):
    model = kit.parse("""
    agraph (float[2] x) => (float[2] y) <float[2] unused = {1.0, 2.0}, float[2] w = {3.0, 4.0}> {
        a = Relu(x)
        b = Exp(a)
        y = Mul(x, w)
    }""")
    model.graph.value_info.append(model.graph.nodes[1].outputs[0])
    stats = kit.apply(DeadCodeElimination(), model)
    assert [n.op_type for n in model.graph] == ["Mul"]
    assert list(model.graph.initializers) == ["w"]
    assert model.graph.value_info == []
    assert stats["node"] == 2 and stats["initializer"] == 1


def test_graph_inputs_and_outputs_stay(kit):
    model = kit.parse("""
    agraph (float[2] x, float[2] unused_input) => (float[2] y, float[2] x_out) {
        y = Relu(x)
        x_out = Identity(x)
    }""")
    kit.apply(DeadCodeElimination(), model)
    assert [v.name for v in model.graph.inputs] == ["x", "unused_input"]
    assert len(model.graph) == 2


def test_outer_values_read_only_by_a_dead_subgraph_die_too(kit):
    model = kit.parse("""
    agraph (bool c, float[2] x) => (float[2] y) {
        outer = Exp(x)
        dead = If(c) <
            then_branch = g1 () => (float[2] t) { t = Add(outer, x) },
            else_branch = g2 () => (float[2] e) { e = Neg(outer) }
        >
        y = Relu(x)
    }""")
    kit.apply(DeadCodeElimination(), model)
    assert [n.op_type for n in model.graph] == ["Relu"]


def test_dead_nodes_inside_subgraphs_go_but_outer_reads_are_respected(kit):
    model = kit.parse("""
    agraph (bool c, float[2] x) => (float[2] y) {
        outer = Exp(x)
        y = If(c) <
            then_branch = g1 () => (float[2] t) { junk = Sin(x) t = Add(outer, x) },
            else_branch = g2 () => (float[2] e) { e = Neg(outer) }
        >
    }""")
    kit.apply(DeadCodeElimination(), model)
    assert kit.ops(model) == {"Exp": 1, "If": 1, "Add": 1, "Neg": 1}


def test_unused_functions_and_opset_imports_go(kit):
    model = kit.parse("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1, "unused.domain" : 1]>
    agraph (float[2] x) => (float[2] y) {
        y = local.outer(x)
    }
    <domain: "local", opset_import: ["" : 17, "local" : 1]>
    outer (a) => (b) { b = local.inner(a) }
    <domain: "local", opset_import: ["" : 17]>
    inner (a) => (b) { b = Relu(a) }
    <domain: "local", opset_import: ["" : 17]>
    orphan (a) => (b) { b = Neg(a) }""")
    stats = kit.apply(DeadCodeElimination(), model)
    assert sorted(f.name for f in model.functions.values()) == ["inner", "outer"]
    assert "unused.domain" not in model.opset_imports and "local" in model.opset_imports
    assert stats["function"] == 1 and stats["opset_import"] == 1
