"""``viz -o page.html`` with hostile names: every model string is escaped for where it lands, so the
page keeps its structure and the embedded JSON reads back the exact names."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import onnx
from click.testing import CliRunner
from onnx import TensorProto, helper

from onnxgraph.cli import cli

HOSTILE = [
    "<!--<script>",
    "</script><script>alert(1)</script>",
    "\"' onmouseover=alert(1) x='",
    "a&amp;b<b>&lt;",
    "</SCRIPT >",
    "\u2028line\u2029",
]


class _Page(HTMLParser):
    """Collects elements, the text of each <script> and of <title>, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.scripts: list[tuple[dict, str]] = []
        self.title = ""
        self._open: tuple[str, dict] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("script", "title"):
            self._open, self._text = (tag, dict(attrs)), []

    def handle_endtag(self, tag):
        if self._open and tag == self._open[0]:
            text = "".join(self._text)
            if tag == "script":
                self.scripts.append((self._open[1], text))
            else:
                self.title = text
            self._open = None

    def handle_data(self, data):
        if self._open:
            self._text.append(data)


def _hostile_model(path) -> None:
    f = TensorProto.FLOAT
    nodes, current = [], "x"
    for i, name in enumerate(HOSTILE):
        nodes.append(helper.make_node("Relu", [current], [name], name=f"{name}#{i}"))
        current = name
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    graph = helper.make_graph(
        nodes, HOSTILE[1], [helper.make_tensor_value_info("x", f, [2])], [helper.make_tensor_value_info("y", f, [2])]
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)


def test_hostile_names_keep_the_page_intact(tmp_path):
    model, page = tmp_path / "hostile.onnx", tmp_path / "page.html"
    _hostile_model(model)
    result = CliRunner().invoke(cli, ["viz", str(model), "-o", str(page)])
    assert result.exit_code == 0, result.output
    text = page.read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(text)
    parsed.close()
    # Exactly the template's two scripts: no name closed one early or opened another.
    assert parsed.tags.count("script") == 2
    (data_attrs, data), (code_attrs, _) = parsed.scripts
    assert data_attrs == {"type": "application/json", "id": "graph-data"} and code_attrs == {}
    for unsafe in ("<", ">", "&"):
        assert unsafe not in data
    strings = json.dumps(json.loads(data), ensure_ascii=False)
    for name in HOSTILE:
        assert json.dumps(name, ensure_ascii=False)[1:-1] in strings, name
    assert HOSTILE[1] in parsed.title
