"""Every op with a gradient rule, several attribute combinations each: one table, one check."""

from __future__ import annotations

import pytest
from gradcheck import check_gradients, spec_model
from op_specs import SPECS


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_gradient_matches_finite_differences(spec):
    model, feeds, wrt = spec_model(spec)
    check_gradients(model, feeds, wrt, eps=spec.eps, fd_tol=spec.fd_tol, compare_onnxruntime=not spec.random)
