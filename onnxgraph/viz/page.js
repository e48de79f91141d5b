// Draws the graph held in <script id="graph-data"> as SVG: layered by topological depth,
// with pan (drag), zoom (wheel), hover details, subgraph clusters and collapsible repeated blocks.
(function () {
  "use strict";
  const NS = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("graph-data").textContent);
  const svg = document.getElementById("canvas");
  const viewport = document.getElementById("viewport");
  const tooltip = document.getElementById("tooltip");
  const nodeById = new Map(data.nodes.map((n) => [n.id, n]));
  const blockById = new Map(data.blocks.map((b) => [b.id, b]));
  const clusterById = new Map(data.clusters.map((c) => [c.id, c]));
  const collapsed = new Set(data.collapse_blocks ? data.blocks.map((b) => b.id) : []);
  const values = data.nodes.filter((n) => n.value !== null).map((n) => n.value);
  // reduce, not Math.min(...): spreading a very large array overflows the call stack
  const low = values.reduce((a, b) => Math.min(a, b), values.length ? values[0] : 0);
  const high = values.reduce((a, b) => Math.max(a, b), values.length ? values[0] : 0);
  const STOPS = [[0, [49, 130, 189]], [0.5, [255, 237, 111]], [1, [222, 45, 38]]];
  const NODE_H = 38, GAP_X = 26, GAP_Y = 56;
  let tx = 0, ty = 0, k = 1;

  function scaleColor(v) {
    const t = high <= low ? 0.5 : Math.min(Math.max((v - low) / (high - low), 0), 1);
    for (let i = 0; i + 1 < STOPS.length; i++) {
      const [t0, c0] = STOPS[i], [t1, c1] = STOPS[i + 1];
      if (t <= t1) {
        const f = (t - t0) / (t1 - t0);
        return "rgb(" + c0.map((a, j) => Math.round(a + (c1[j] - a) * f)).join(",") + ")";
      }
    }
    return "rgb(222,45,38)";
  }

  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) e.setAttribute(key, value);
    if (parent) parent.appendChild(e);
    return e;
  }

  // The graph as drawn now: nodes of collapsed blocks merge into one box per block.
  function visibleGraph() {
    const rep = (id) => {
      const n = nodeById.get(id);
      return n && n.block && collapsed.has(n.block) ? "block:" + n.block : id;
    };
    const nodes = [], seen = new Set();
    for (const n of data.nodes) {
      const r = rep(n.id);
      if (seen.has(r)) continue;
      seen.add(r);
      if (r === n.id) {
        nodes.push({ id: n.id, node: n, kind: n.kind, label: n.op, sub: n.kind === "op" ? n.name : "",
                     cluster: n.cluster, block: n.block });
      } else {
        const b = blockById.get(n.block);
        nodes.push({ id: r, kind: "block", block: n.block, cluster: n.cluster,
                     label: "\u25b8 " + b.label, sub: b.size + " nodes (click to expand)" });
      }
    }
    const edges = [], edgeSeen = new Set();
    for (const e of data.edges) {
      const a = rep(e.from), b = rep(e.to);
      if (a === b || edgeSeen.has(a + "\u0000" + b)) continue;
      edgeSeen.add(a + "\u0000" + b);
      edges.push({ from: a, to: b, label: e.label });
    }
    return { nodes, edges };
  }

  // Longest-path layers in topological order, each layer ordered by its predecessors' positions.
  function layout(g) {
    const count = g.nodes.length;
    const index = new Map(g.nodes.map((n, i) => [n.id, i]));
    const preds = g.nodes.map(() => []), succs = g.nodes.map(() => []);
    for (const e of g.edges) {
      const a = index.get(e.from), b = index.get(e.to);
      if (a === undefined || b === undefined) continue;
      preds[b].push(a);
      succs[a].push(b);
    }
    const indegree = preds.map((p) => p.length), depth = new Array(count).fill(0);
    const placed = new Array(count).fill(false), order = [];
    const queue = [];
    indegree.forEach((d, i) => { if (d === 0) queue.push(i); });
    for (let head = 0; head < queue.length; head++) {
      const i = queue[head];
      placed[i] = true;
      order.push(i);
      for (const s of succs[i]) {
        depth[s] = Math.max(depth[s], depth[i] + 1);
        if (--indegree[s] === 0) queue.push(s);
      }
    }
    for (let i = 0; i < count; i++) if (!placed[i]) order.push(i);
    const layers = [];
    for (const i of order) (layers[depth[i]] = layers[depth[i]] || []).push(i);
    const boxes = g.nodes.map((n) => {
      const chars = Math.max(n.label.length, Math.ceil((n.sub || "").length * 0.75));
      return { w: Math.max(84, chars * 7.2 + 22), h: NODE_H, x: 0, y: 0 };
    });
    layers.forEach((layer, d) => {
      if (!layer) return;
      const key = (i) => preds[i].length ? preds[i].reduce((s, p) => s + boxes[p].x, 0) / preds[i].length : 0;
      layer.sort((a, b) => key(a) - key(b));
      const total = layer.reduce((s, i) => s + boxes[i].w, 0) + GAP_X * (layer.length - 1);
      let x = -total / 2;
      for (const i of layer) {
        boxes[i].x = x + boxes[i].w / 2;
        boxes[i].y = d * (NODE_H + GAP_Y);
        x += boxes[i].w + GAP_X;
      }
    });
    return boxes;
  }

  function frame(group, cls, members, label, pad, onClick) {
    if (!members.length) return;
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const b of members) {
      x0 = Math.min(x0, b.x - b.w / 2 - pad);
      x1 = Math.max(x1, b.x + b.w / 2 + pad);
      y0 = Math.min(y0, b.y - b.h / 2 - pad - 10);
      y1 = Math.max(y1, b.y + b.h / 2 + pad);
    }
    const g = el("g", { class: cls }, group);
    el("rect", { x: x0, y: y0, width: x1 - x0, height: y1 - y0 }, g);
    const text = el("text", { x: x0 + 6, y: y0 + 11 }, g);
    text.textContent = label;
    if (onClick) text.addEventListener("click", onClick);
  }

  function ancestors(clusterId) {
    const out = [];
    for (let c = clusterId; c; c = clusterById.get(c).parent) out.push(c);
    return out;
  }

  function showTooltip(item, event) {
    tooltip.innerHTML = "";
    const title = document.createElement("h4");
    title.textContent = item.label + (item.node && item.node.name && item.kind === "op" ? "  " + item.node.name : "");
    tooltip.appendChild(title);
    const table = document.createElement("table");
    const row = (k, v) => {
      const tr = table.insertRow();
      const a = tr.insertCell(), b = tr.insertCell();
      a.className = "k";
      a.textContent = k;
      b.textContent = v;
    };
    if (item.node) {
      const n = item.node;
      if (n.value !== null) row(data.data_label || "value", String(n.value));
      for (const [key, value] of Object.entries(n.attrs)) row(key, value);
      if (n.kind === "op") for (const [name, type] of n.inputs) row("in", (name || "\u2205") + ": " + type);
      for (const [name, type] of n.outputs) row(n.kind === "input" ? "type" : "out", (n.kind === "op" ? name + ": " : "") + type);
    } else {
      row("block", item.block);
    }
    tooltip.appendChild(table);
    tooltip.style.display = "block";
    moveTooltip(event);
  }

  function moveTooltip(event) {
    const x = Math.min(event.clientX + 14, window.innerWidth - tooltip.offsetWidth - 8);
    const y = Math.min(event.clientY + 14, window.innerHeight - tooltip.offsetHeight - 8);
    tooltip.style.left = x + "px";
    tooltip.style.top = y + "px";
  }

  function render() {
    viewport.innerHTML = "";
    const g = visibleGraph();
    const boxes = layout(g);
    const byId = new Map(g.nodes.map((n, i) => [n.id, boxes[i]]));
    const frames = el("g", {}, viewport), edges = el("g", {}, viewport), nodes = el("g", {}, viewport);
    const clusterMembers = new Map(), blockMembers = new Map();
    g.nodes.forEach((n, i) => {
      for (const c of ancestors(n.cluster)) (clusterMembers.get(c) || clusterMembers.set(c, []).get(c)).push(boxes[i]);
      if (n.block && n.kind !== "block") (blockMembers.get(n.block) || blockMembers.set(n.block, []).get(n.block)).push(boxes[i]);
    });
    const byDepth = [...clusterMembers.keys()].sort((a, b) => ancestors(a).length - ancestors(b).length);
    for (const c of byDepth) frame(frames, "cluster", clusterMembers.get(c), clusterById.get(c).label, 12 + 4 * (3 - Math.min(3, ancestors(c).length)));
    for (const [b, members] of blockMembers) {
      frame(frames, "blockframe", members, "\u25be " + blockById.get(b).label + " (click to collapse)", 8,
            () => { collapsed.add(b); render(); });
    }
    for (const e of g.edges) {
      const a = byId.get(e.from), b = byId.get(e.to);
      if (!a || !b) continue;
      const y0 = a.y + a.h / 2, y1 = b.y - b.h / 2, mid = (y0 + y1) / 2;
      const path = el("path", { class: "edge", d: `M${a.x},${y0} C${a.x},${mid} ${b.x},${mid} ${b.x},${y1}`,
                                "marker-end": "url(#arrow)" }, edges);
      el("title", {}, path).textContent = e.label;
    }
    g.nodes.forEach((n, i) => {
      const box = boxes[i];
      const group = el("g", { class: "node " + n.kind, "data-id": n.id,
                              transform: `translate(${box.x - box.w / 2},${box.y - box.h / 2})` }, nodes);
      const fill = n.node && n.node.value !== null ? scaleColor(n.node.value) : n.kind === "op" ? "#dbe8ff" : null;
      const rect = el("rect", { width: box.w, height: box.h, rx: n.kind === "op" || n.kind === "block" ? 5 : 17 }, group);
      if (fill) rect.setAttribute("fill", fill);
      const label = el("text", { x: box.w / 2, y: n.sub ? 16 : 23, "text-anchor": "middle" }, group);
      label.textContent = n.label;
      if (n.sub) {
        const sub = el("text", { class: "name", x: box.w / 2, y: 30, "text-anchor": "middle" }, group);
        sub.textContent = n.sub.length > 40 ? "\u2026" + n.sub.slice(-39) : n.sub;
      }
      group.addEventListener("mouseenter", (ev) => showTooltip(n, ev));
      group.addEventListener("mousemove", moveTooltip);
      group.addEventListener("mouseleave", () => { tooltip.style.display = "none"; });
      if (n.kind === "block") group.addEventListener("click", () => { collapsed.delete(n.block); render(); });
    });
  }

  function apply() { viewport.setAttribute("transform", `translate(${tx},${ty}) scale(${k})`); }

  function fit() {
    const box = viewport.getBBox();
    const width = svg.clientWidth || window.innerWidth, height = svg.clientHeight || window.innerHeight - 36;
    if (!box.width || !box.height) return;
    // Whole graph if it stays readable; else as wide as fits (readable scale), starting at the top.
    const whole = Math.min(1.5, (width - 40) / box.width, (height - 40) / box.height);
    k = Math.max(whole, Math.min(0.8, (width - 40) / box.width));
    tx = (width - box.width * k) / 2 - box.x * k;
    ty = Math.max(20, (height - box.height * k) / 2) - box.y * k;
    apply();
  }

  svg.addEventListener("wheel", (event) => {
    event.preventDefault();
    const factor = Math.exp(-event.deltaY * 0.0015);
    const rect = svg.getBoundingClientRect();
    const px = event.clientX - rect.left, py = event.clientY - rect.top;
    tx = px - (px - tx) * factor;
    ty = py - (py - ty) * factor;
    k *= factor;
    apply();
  }, { passive: false });
  let drag = null;
  svg.addEventListener("mousedown", (event) => { drag = [event.clientX - tx, event.clientY - ty]; svg.classList.add("dragging"); });
  window.addEventListener("mousemove", (event) => {
    if (!drag) return;
    tx = event.clientX - drag[0];
    ty = event.clientY - drag[1];
    apply();
  });
  window.addEventListener("mouseup", () => { drag = null; svg.classList.remove("dragging"); });
  document.getElementById("fit").addEventListener("click", fit);
  document.getElementById("expand").addEventListener("click", () => { collapsed.clear(); render(); fit(); });
  document.getElementById("collapse").addEventListener("click", () => {
    data.blocks.forEach((b) => collapsed.add(b.id));
    render();
    fit();
  });
  if (!data.blocks.length) {
    document.getElementById("expand").style.display = "none";
    document.getElementById("collapse").style.display = "none";
  }
  if (values.length) {
    document.getElementById("legend").style.display = "flex";
    document.getElementById("low").textContent = String(low);
    document.getElementById("high").textContent = String(high);
    document.getElementById("data-label").textContent = data.data_label || "";
  }
  render();
  fit();
  // page.html#<node id or name> opens with that node's details shown (links from reports, tests).
  const wanted = decodeURIComponent(window.location.hash.slice(1));
  if (wanted) {
    const target = data.nodes.find((n) => n.id === wanted || (n.name && n.name === wanted));
    const group = target && viewport.querySelector(`g.node[data-id="${target.id}"]`);
    if (group) {
      const r = group.getBoundingClientRect();
      group.dispatchEvent(new MouseEvent("mouseenter", { clientX: r.right, clientY: r.top }));
      group.querySelector("rect").style.strokeWidth = "3";
    }
  }
  document.body.setAttribute("data-rendered", String(viewport.querySelectorAll("g.node").length));
})();
