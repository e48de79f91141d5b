"""The renames optimize and convert record: composed over two runs, kept out when nothing was renamed."""

from __future__ import annotations

import onnx.parser

import onnxgraph
from onnxgraph import renames
from onnxgraph.convert.pipeline import ConvertOptions, convert_model
from onnxgraph.optimizers import optimize

_TEXT = """<ir_version: 8, opset_import: ["" : 17]> g (float[2,3] x) => (float[2,3] y) {
    r = Relu(x)
    kept = Identity(r)
    e = Exp(kept)
    y = Identity(e)
}"""


def test_optimize_records_and_a_second_run_composes():
    model, _ = optimize(onnx.parser.parse_model(_TEXT))
    assert renames.read(model) == {"kept": "r"}  # y is an output: e took over its name instead
    assert [n.op_type for n in model.graph] == ["Relu", "Exp"]
    again, _ = optimize(model)
    assert renames.read(again) == {"kept": "r"}


def test_nothing_renamed_writes_no_key():
    text = _TEXT.replace("kept = Identity(r)", "kept = Neg(r)").replace("y = Identity(e)", "y = Neg(e)")
    model, _ = optimize(onnx.parser.parse_model(text))
    assert renames.METADATA_KEY not in model.metadata_props


def test_convert_fp16_records_removed_casts():
    text = """<ir_version: 8, opset_import: ["" : 17]> g (float[2,3] x) => (float[2,3] y) {
        r = Relu(x)
        c = Cast<to = 1>(r)
        y = Exp(c)
    }"""
    model, _ = convert_model(onnxgraph.load(onnx.parser.parse_model(text)), ConvertOptions(precision="fp16"))
    assert renames.read(model) == {"c": "r"}
    assert renames.read(onnxgraph.from_proto(model.to_proto())) == {"c": "r"}
