"""The error of the gradient builder."""

from __future__ import annotations

from onnxgraph.errors import OnnxGraphError


class GradientError(OnnxGraphError):
    """A gradient cannot be built: a missing rule on the path, an unsupported op form, a bad loss
    or wrt choice. The command line shows it as one line and exits 2."""
