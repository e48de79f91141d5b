"""Exceptions raised by onnxgraph.

Every error that a user can cause derives from :class:`OnnxGraphError`, so the command line can turn it
into one clear line and exit code 2 without a traceback.
"""

from __future__ import annotations


class OnnxGraphError(Exception):
    """Base class of the errors a user can cause (bad files, bad graphs, bad arguments)."""


class ModelLoadError(OnnxGraphError):
    """A model file cannot be read: missing, not ONNX, truncated, or its external data is missing.

    Args:
        source: the file (or a short description of an in-memory source) the model came from.
        problem: what is wrong with it, in a few words.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class GraphError(OnnxGraphError):
    """A graph is malformed: a dangling reference, a cycle, or a value written twice."""


class ModelSaveError(OnnxGraphError):
    """A model cannot be written to the requested destination."""


class OutputPathError(OnnxGraphError):
    """A destination must not or cannot be written: it is an input, another output, or its folder is missing."""
