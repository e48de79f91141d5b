"""Node.ensure_output: exposing an optional output the model omitted."""

from __future__ import annotations

import onnx
from onnx import parser

import onnxgraph


def _layer_norm_model(outputs: str) -> onnxgraph.Model:
    return onnxgraph.from_proto(
        parser.parse_model(f"""
        <ir_version: 8, opset_import: ["" : 18]>
        g (float[2, 4] x, float[4] s) => (float[2, 4] y) {{
            {outputs} = LayerNormalization(x, s)
        }}
        """)
    )


def test_appends_missing_trailing_outputs():
    model = _layer_norm_model("y")
    node = model.graph.nodes[0]
    inv = node.ensure_output(2)
    assert len(node.outputs) == 3 and node.outputs[1].name == "" and inv.name
    assert inv.producer() is node and inv.index() == 2
    assert node.outputs[1].producer() is node and node.outputs[1].index() == 1
    proto = model.to_proto()
    assert list(proto.graph.node[0].output) == ["y", "", inv.name]
    onnx.checker.check_model(proto)


def test_names_an_omitted_output_and_keeps_existing_ones():
    model = _layer_norm_model('y, "", inv')
    node = model.graph.nodes[0]
    existing = node.ensure_output(2)
    assert existing.name == "inv"
    mean = node.ensure_output(1)
    assert mean.name and mean.name not in ("y", "inv") and node.outputs[1] is mean
    assert node.ensure_output(1) is mean
