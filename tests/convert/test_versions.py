"""The onnxruntime support table and IR version rules."""

from __future__ import annotations

import onnx
import onnxruntime
import pytest
from onnx import helper

from onnxgraph.convert import versions
from onnxgraph.errors import OnnxGraphError
from onnxgraph.runtime.sessions import create_session


def _loads(ir_version: int, opset: int) -> bool:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
    try:
        create_session(model)
    except Exception:  # noqa: BLE001 - onnxruntime's own exception types
        return False
    return True


def test_table_never_goes_backwards():
    entries = [versions.ORT_SUPPORT[k] for k in sorted(versions.ORT_SUPPORT)]
    for older, newer in zip(entries, entries[1:]):
        assert newer[0] >= older[0] and newer[1] >= older[1]


def test_table_agrees_with_onnx_on_which_ir_version_each_opset_needs():
    for release, (max_ir, max_opset) in versions.ORT_SUPPORT.items():
        assert versions.min_ir_for_opset(max_opset) <= max_ir, release


def test_installed_onnxruntime_loads_exactly_its_table_entry():
    installed = versions.parse_version(onnxruntime.__version__)
    if installed not in versions.ORT_SUPPORT:
        pytest.fail(f"add onnxruntime {onnxruntime.__version__} to ORT_SUPPORT (measure it like this test)")
    max_ir, max_opset = versions.ORT_SUPPORT[installed]
    assert _loads(max_ir, max_opset)
    assert not _loads(max_ir + 1, max_opset)
    assert not _loads(max_ir, max_opset + 1)


def test_release_between_entries_gets_the_older_entry():
    assert versions.ort_limits("1.13.1") == versions.ORT_SUPPORT[(1, 12)]
    assert versions.ort_limits("1.31") == versions.ORT_SUPPORT[(1, 31)]
    assert versions.ort_limits("2.0") == versions.ORT_SUPPORT[max(versions.ORT_SUPPORT)]


@pytest.mark.parametrize("text", ["1", "one.two", "1.2.3.4", ""])
def test_malformed_versions_are_rejected(text):
    with pytest.raises(OnnxGraphError, match="not an onnxruntime version"):
        versions.ort_limits(text)


def test_too_old_release_is_rejected():
    with pytest.raises(OnnxGraphError, match="older than"):
        versions.ort_limits("0.5")


def test_ir_needed_by_opset_and_types():
    assert versions.min_ir_for_opset(13) == 7
    assert versions.min_ir_for_opset(21) == 10
    assert versions.min_ir_for_types({onnx.TensorProto.FLOAT}) == 3
    assert versions.min_ir_for_types({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT8E4M3FN}) == 9
    assert versions.min_ir_for_types({onnx.TensorProto.INT4}) == 10
