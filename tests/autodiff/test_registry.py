"""The gradient-rule registry refuses duplicates and treats "ai.onnx" as the default domain."""

from __future__ import annotations

import pytest

from onnxgraph.autodiff.registry import RULES, lookup, register, register_stop


@pytest.fixture
def scratch_keys():
    """Registry keys a test adds, removed afterwards."""
    keys: list[tuple[str, str]] = []
    yield keys
    for key in keys:
        RULES.pop(key, None)


def test_a_second_rule_for_the_same_op_is_refused():
    add = lookup("", "Add")
    with pytest.raises(ValueError, match="a gradient rule for Add is already registered"):

        @register("Add")
        def again(b, node, grads):
            return [None, None]

    assert lookup("", "Add") is add


def test_ai_onnx_and_the_empty_domain_are_one_domain(scratch_keys):
    scratch_keys.append(("", "TestOnlyOp"))

    @register("TestOnlyOp", domain="ai.onnx")
    def rule(b, node, grads):
        return [grads[0]]

    assert ("", "TestOnlyOp") in RULES
    assert lookup("", "TestOnlyOp").fn is rule and lookup("ai.onnx", "TestOnlyOp").fn is rule
    with pytest.raises(ValueError, match="already registered"):
        register_stop("TestOnlyOp", family="test")


def test_a_stop_rule_is_refused_twice_too(scratch_keys):
    scratch_keys.append(("test.domain", "Probe"))
    register_stop("Probe", family="test", domain="test.domain")
    with pytest.raises(ValueError, match=r"test\.domain::Probe is already registered"):
        register_stop("Probe", family="test", domain="test.domain")
    assert lookup("test.domain", "Probe").fn is None


def test_a_position_spec_other_than_all_is_refused():
    """A misspelt ``differentiable="al"`` used to become the tuple ("a", "l") and match no input."""
    with pytest.raises(ValueError, match="positions are a sequence of ints or 'all'"):

        @register("TestOnlyMisspelt", differentiable="al")
        def rule(b, node, grads):
            return [grads[0]]

    assert lookup("", "TestOnlyMisspelt") is None
