"""``onnxgraph viz``: DOT structure, SVG through Graphviz, and the HTML page rendered in headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

import onnxgraph
from onnxgraph.cli import cli
from onnxgraph.viz import build_view
from onnxgraph.viz.view import repeated_block

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OP_FILL = (0xDB, 0xE8, 0xFF)
INPUT_FILL = (0xD9, 0xF2, 0xD9)
HOT = (0xDE, 0x2D, 0x26)


def _layered_model(path, layers: int) -> str:
    """``layers`` repeated blocks named like an exporter names them, then an If with two branches."""
    nodes, inits, x = [], [], "x"
    rng = np.random.default_rng(0)
    for i in range(layers):
        p = f"/layers.{i}"
        inits += [
            numpy_helper.from_array(rng.random((16, 16), np.float32), f"w{i}"),
            numpy_helper.from_array(np.ones(16, np.float32), f"s{i}"),
        ]
        nodes += [
            helper.make_node("LayerNormalization", [x, f"s{i}"], [f"ln{i}"], name=f"{p}/norm/LayerNormalization"),
            helper.make_node("MatMul", [f"ln{i}", f"w{i}"], [f"mm{i}"], name=f"{p}/fc/MatMul"),
            helper.make_node("Relu", [f"mm{i}"], [f"r{i}"], name=f"{p}/act/Relu"),
            helper.make_node("Add", [f"r{i}", x], [f"h{i}"], name=f"{p}/Add"),
        ]
        x = f"h{i}"
    then_branch = helper.make_graph(
        [helper.make_node("Sigmoid", [x], ["t"], name="then_sigmoid")],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("Neg", [x], ["e0"], name="else_neg"),
            helper.make_node("Tanh", ["e0"], ["e"], name="else_tanh"),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None)],
    )
    nodes.append(helper.make_node("If", ["c"], ["y"], name="choose", then_branch=then_branch, else_branch=else_branch))
    graph = helper.make_graph(
        nodes,
        "toy",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16]),
            helper.make_tensor_value_info("c", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)
    return str(path)


@pytest.fixture
def toy(tmp_path) -> str:
    return _layered_model(tmp_path / "toy.onnx", 3)


def _viz(*args: str):
    return CliRunner().invoke(cli, ["viz", *args])


def test_repeated_blocks_come_from_exporter_style_names():
    assert repeated_block("/model/layers.3/self_attn/MatMul") == "/model/layers.3"
    assert repeated_block("/encoder/block_12/conv/Conv") == "/encoder/block_12"
    assert repeated_block("/model/embed/Gather") is None
    assert repeated_block("Relu_3") is None  # the last segment is the node itself, not a block


def test_view_has_clusters_blocks_and_edges(toy):
    view = build_view(onnxgraph.load(toy))
    assert [n.op for n in view.nodes if n.kind == "op"].count("MatMul") == 3
    assert sorted(c["label"] for c in view.clusters) == ["If choose else_branch", "If choose then_branch"]
    assert [b["id"] for b in view.blocks] == ["/layers.0", "/layers.1", "/layers.2"]
    assert all(b["size"] == 4 for b in view.blocks)
    ids = {n.name: n.id for n in view.nodes if n.kind == "op"}
    assert (ids["then_sigmoid"], ids["choose"]) in {(a, b) for a, b, _ in view.edges}  # branch result -> If
    assert (ids["/layers.2/Add"], ids["else_neg"]) in {(a, b) for a, b, _ in view.edges}  # outer value -> body


def test_dot_output(toy, tmp_path):
    data = tmp_path / "lat.json"
    data.write_text(json.dumps({"label": "latency ms", "values": {"/layers.0/fc/MatMul": 3.0, "choose": 1.0}}))
    out = tmp_path / "toy.dot"
    result = _viz(toy, "-o", str(out), "--node-data", str(data))
    assert result.exit_code == 0, result.output
    dot = out.read_text()
    assert dot.startswith('digraph "toy"')
    assert dot.count('subgraph "cluster_cluster') == 2  # the If branches
    assert dot.count('subgraph "cluster_block') == 3  # the repeated layers
    assert re.search(r'label="MatMul\\n/layers.0/fc/MatMul\\n3".*fillcolor="#de2d26"', dot)  # hottest is red
    assert re.search(r'label="If\\nchoose\\n1".*fillcolor="#3182bd"', dot)  # coolest is blue
    assert "float32[batch,16]" in dot  # edge labels carry inferred shapes


def test_max_nodes_leaves_a_placeholder(toy, tmp_path):
    out = tmp_path / "few.dot"
    result = _viz(toy, "-o", str(out), "--max-nodes", "5")
    assert result.exit_code == 0 and "11 more left out" in result.stdout
    dot = out.read_text()
    assert dot.count("shape=box") == 5 and "… 11 more nodes" in dot


def test_svg_through_graphviz_or_a_clear_message(toy, tmp_path, monkeypatch):
    out = tmp_path / "toy.svg"
    if shutil.which("dot"):
        result = _viz(toy, "-o", str(out))
        assert result.exit_code == 0, result.output
        svg = out.read_text()
        assert "<svg" in svg and "LayerNormalization" in svg and "then_sigmoid" in svg
        out.unlink()
    monkeypatch.setattr("onnxgraph.viz.dot.shutil.which", lambda name: None)
    result = _viz(toy, "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr == (
        "error: SVG output needs Graphviz's 'dot' program (apt-get install graphviz); write .dot or .html instead\n"
    )
    assert not out.exists()


def test_html_is_self_contained(toy, tmp_path):
    out = tmp_path / "toy.html"
    assert _viz(toy, "-o", str(out)).exit_code == 0
    page = out.read_text()
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert set(re.findall(r"https?://[^\s\"')]+", page)) <= {"http://www.w3.org/2000/svg"}  # a namespace, not a fetch
    assert "then_sigmoid" in page


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not a JSON file"),
        ('{"choose": "slow"}', 'expected {"node name": number'),
        ('{"nobody": 1.0}', "names no node of the model"),
    ],
)
def test_bad_node_data_is_a_one_line_error(toy, tmp_path, content, message):
    data = tmp_path / "data.json"
    if content is not None:
        data.write_text(content)
    out = tmp_path / "toy.html"
    result = _viz(toy, "-o", str(out), "--node-data", str(data))
    assert result.exit_code == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_unknown_suffix_is_rejected(toy, tmp_path):
    result = _viz(toy, "-o", str(tmp_path / "toy.png"))
    assert result.exit_code == 2 and "must be one of .dot, .svg, .html" in result.stderr


# -- the page in a real browser ---------------------------------------------------------------


def _png_pixels(path) -> np.ndarray:
    """Decode an 8-bit RGB/RGBA, non-interlaced PNG (what Chromium writes) to an HxWxC array."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0
    channels = 3 if color == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * channels
    image = np.zeros((height, stride), np.int32)
    previous = np.zeros(stride, np.int32)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 1:  # Sub: a running sum per channel
            row = np.cumsum(line.reshape(-1, channels), axis=0).reshape(-1) & 0xFF
        elif kind == 2:  # Up
            row = (line + previous) & 0xFF
        else:  # Average and Paeth depend on the pixel to the left: decode pixel by pixel
            row = np.zeros(stride, np.int32)
            for x in range(stride):
                left = row[x - channels] if x >= channels else 0
                up, up_left = previous[x], previous[x - channels] if x >= channels else 0
                if kind == 3:
                    pred = (left + up) // 2
                else:
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                row[x] = (line[x] + pred) & 0xFF
        image[y], previous = row, row
    return image.reshape(height, width, channels)[:, :, :3]


def _chromium(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
        capture_output=True,
        timeout=120,
        check=False,
    )


def _count(pixels: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(np.abs(pixels - np.array(rgb)) <= 3, axis=2).sum())


needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed")


@needs_chromium
def test_html_renders_nodes_in_headless_chromium(toy, tmp_path):
    data = tmp_path / "lat.json"
    data.write_text(json.dumps({"/layers.1/fc/MatMul": 9.0, "choose": 1.0}))
    page = tmp_path / "toy.html"
    assert _viz(toy, "-o", str(page), "--node-data", str(data)).exit_code == 0
    shot = tmp_path / "toy.png"
    done = _chromium([f"--screenshot={shot}", "--window-size=900,1400", page.as_uri()])
    assert shot.exists(), done.stderr.decode()[-500:]
    pixels = _png_pixels(shot)
    assert _count(pixels, OP_FILL) > 2000  # the op boxes are drawn...
    assert _count(pixels, INPUT_FILL) > 300  # ...and the graph inputs...
    assert _count(pixels, HOT) > 100  # ...and the node with the highest figure is red
    dom = _chromium(["--dump-dom", page.as_uri()]).stdout.decode()
    assert 'data-rendered="19"' in dom  # 16 ops, 2 inputs, 1 output
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", dom)
    for op in ("LayerNormalization", "MatMul", "Relu", "Add", "If", "Sigmoid", "Tanh"):
        assert op in texts, op


@needs_chromium
def test_hover_details_show_attributes_and_shapes(toy, tmp_path):
    page = tmp_path / "toy.html"
    assert _viz(toy, "-o", str(page)).exit_code == 0
    dom = _chromium(["--dump-dom", page.as_uri() + "#/layers.1/norm/LayerNormalization"]).stdout.decode()
    tooltip = re.search(r'<div id="tooltip"[^>]*>(.*?)</div>', dom, re.S).group(1)
    assert "LayerNormalization" in tooltip and "ln1: float32[batch,16]" in tooltip
    assert "s1: float32[16] (weight)" in tooltip


@needs_chromium
def test_big_models_start_with_repeated_blocks_collapsed(tmp_path):
    path = _layered_model(tmp_path / "big.onnx", 80)  # 324 ops: above the collapse threshold
    page = tmp_path / "big.html"
    assert _viz(path, "-o", str(page)).exit_code == 0
    dom = _chromium(["--dump-dom", "--window-size=900,900", page.as_uri()]).stdout.decode()
    rendered = int(re.search(r'data-rendered="(\d+)"', dom).group(1))
    assert rendered == 80 + 4 + 2 + 1  # 80 block boxes, If + its 3 branch nodes, 2 inputs, 1 output
    assert "▸ layers.79" in dom
