"""Gradient rules, one module per op family; importing this package fills the registry."""

from onnxgraph.autodiff.rules import (  # noqa: F401
    attention,
    control,
    conv,
    elementwise,
    loops,
    loss,
    matmul,
    normalization,
    pooling,
    recurrent,
    reduction,
    resize,
    shape,
)
