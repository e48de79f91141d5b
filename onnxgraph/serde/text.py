"""The ONNX textual syntax (``.onnxtxt``): onnx.parser to read, onnx.printer to write.

Large tensors do not go into the text: :func:`onnxgraph.save` writes them to an external-data file
beside it and the text refers to them by location, offset and length (which the parser understands).
"""

from __future__ import annotations

import os
import re

import onnx
import onnx.parser
import onnx.printer

from onnxgraph.errors import ModelLoadError, one_line
from onnxgraph.serde.exporter import default_ir_version

TEXT_SUFFIX = ".onnxtxt"


def is_text_path(path: str | os.PathLike) -> bool:
    """True when ``path`` names an ONNX text file."""
    return os.fspath(path).lower().endswith(TEXT_SUFFIX)


def parse_text(data: bytes, source: str) -> onnx.ModelProto:
    """Parse ONNX text into a ModelProto.

    Raises:
        ModelLoadError: the text is not UTF-8 or not valid ONNX syntax (one line, with the position).
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelLoadError(source, f"is not UTF-8 text (byte {exc.start})") from exc
    try:
        proto = onnx.parser.parse_model(text)
    except onnx.parser.ParseError as exc:
        raise ModelLoadError(source, f"is not valid ONNX text: {_one_line(exc)}") from exc
    except RuntimeError as exc:  # a literal the parser cannot convert, such as the float 1e4002
        raise ModelLoadError(source, f"is not valid ONNX text: {_literal_problem(text, exc)}") from exc
    if not proto.HasField("graph") or not proto.graph.node and not proto.graph.output:
        raise ModelLoadError(source, "is not valid ONNX text: it defines no graph")
    if proto.ir_version <= 0:
        proto.ir_version = default_ir_version({o.domain: o.version for o in proto.opset_import})
    return proto


def _one_line(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    position = re.search(r"line:\s*(\d+)\s*column:\s*(\d+)", text)
    reason = one_line(text, last=True) or "syntax error"
    return f"line {position.group(1)} column {position.group(2)}: {reason}" if position else reason


def _literal_problem(text: str, exc: RuntimeError) -> str:
    """Name the tensor and line of a literal the parser rejected ("Failed to parse float from string: X")."""
    reason = _one_line(exc)
    literal = reason.rpartition(": ")[2].strip()
    position = text.find(literal) if literal else -1
    if position < 0:
        return reason
    line = text.count("\n", 0, position) + 1
    tensor = re.findall(r"([\w.:/-]+)\s*=\s*\{[^{}]*$", text[:position])
    where = f"tensor '{tensor[-1]}', " if tensor else ""
    return f"{where}line {line}: literal '{literal}' is out of range or malformed"


def print_text(proto: onnx.ModelProto) -> str:
    """The ONNX text of ``proto`` (external tensors are spelled as location, offset and length)."""
    return onnx.printer.to_text(proto)
