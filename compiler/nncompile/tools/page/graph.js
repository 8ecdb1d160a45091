"use strict";
// Draws the model of #model-data: dagre lays out the visible graph (folded boxes as one vertex,
// expanded ones as their parts), the SVG is drawn from its positions; layout runs again on each
// expand or fold.
(function () {
  const data = JSON.parse(document.getElementById("model-data").textContent);
  const COLOURS = {
    "new": ["#c8f0c8", "new (trains from scratch)"],
    "pretrained-trainable": ["#bcd8f5", "pretrained, trainable"],
    "pretrained-frozen": ["#d0d0d0", "pretrained, frozen"],
    "frozen": ["#e8e0c8", "new, frozen"],
    "frozen-bn": ["#b0a0d8", "frozen BatchNorm"],
    "unfreezes": ["#ffd59a", "unfreezes later"],
    "adapters": ["#f4b6d2", "frozen, with adapters (LoRA) training"],
    "none": ["#ffffff", "no parameters"],
    "io": ["#f4f4f4", "input / output"],
  };
  const SVG = "http://www.w3.org/2000/svg";
  const expanded = new Set();
  const byId = new Map();
  let selected = null;

  for (const v of data.vertices) {
    byId.set(v.id, v);
    if (v.children) for (const c of v.children.nodes) byId.set(c.id, c);
  }

  function visibleGraph() {
    const nodes = [], edges = [];
    const entries = (id, source) => expanded.has(id) ? byId.get(id).children.entries[source] || [] : [id];
    const exit = (id) => expanded.has(id) ? byId.get(id).children.exit : id;
    for (const v of data.vertices) {
      if (expanded.has(v.id)) {
        nodes.push(...v.children.nodes);
        edges.push(...v.children.edges);
      } else nodes.push(v);
    }
    for (const e of data.edges) {
      for (const target of entries(e.target, e.source)) edges.push({source: exit(e.source), target, label: e.label});
    }
    return {nodes, edges};
  }

  function boxTitle(v) {
    if (v.children && v.children.kind === "block" && v.children.copies > 1) return `${v.title} \u00d7 ${v.children.copies}`;
    return v.title;
  }

  function render() {
    const {nodes, edges} = visibleGraph();
    const g = new dagre.graphlib.Graph({multigraph: true});
    g.setGraph({rankdir: "TB", nodesep: 24, ranksep: 36, edgesep: 12, marginx: 16, marginy: 16});
    for (const v of nodes) {
      const width = 16 + 7 * Math.max(boxTitle(v).length + (v.children ? 3 : 0), (v.detail || "").length);
      g.setNode(v.id, {width, height: v.kind === "output" ? 30 : 40});
    }
    edges.forEach((e, i) => g.setEdge(e.source, e.target, {label: e.label, width: 6.5 * e.label.length, height: e.label ? 14 : 0, labelpos: "c", order: !!e.order}, "e" + i));
    dagre.layout(g);
    const svg = document.getElementById("graph");
    svg.replaceChildren();
    const size = g.graph();
    svg.setAttribute("width", size.width);
    svg.setAttribute("height", size.height);
    for (const key of g.edges()) {
      const e = g.edge(key);
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", "M" + e.points.map(p => `${p.x},${p.y}`).join(" L"));
      path.setAttribute("class", "edge" + (e.order ? " order" : ""));
      path.setAttribute("marker-end", "url(#arrow)");
      path.dataset.source = key.v;
      path.dataset.target = key.w;
      svg.appendChild(path);
      if (e.label) {
        const text = document.createElementNS(SVG, "text");
        text.setAttribute("class", "edge-label");
        text.setAttribute("x", e.x);
        text.setAttribute("y", e.y + 4);
        text.setAttribute("text-anchor", "middle");
        text.textContent = e.label;
        svg.appendChild(text);
      }
    }
    const defs = document.createElementNS(SVG, "defs");
    defs.innerHTML = '<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#777"/></marker>';
    svg.appendChild(defs);
    for (const v of nodes) {
      const n = g.node(v.id);
      const group = document.createElementNS(SVG, "g");
      group.setAttribute("class", "vertex");
      group.dataset.id = v.id;
      group.dataset.title = v.title;
      if (v.state) group.dataset.state = v.state;
      const rect = document.createElementNS(SVG, "rect");
      rect.setAttribute("x", n.x - n.width / 2);
      rect.setAttribute("y", n.y - n.height / 2);
      rect.setAttribute("width", n.width);
      rect.setAttribute("height", n.height);
      rect.setAttribute("rx", v.kind === "output" || v.kind === "input" ? 14 : 4);
      const colour = v.kind === "input" || v.kind === "output" ? "io" : v.state;
      rect.setAttribute("fill", (COLOURS[colour] || COLOURS.none)[0]);
      group.appendChild(rect);
      const title = document.createElementNS(SVG, "text");
      title.setAttribute("x", n.x);
      title.setAttribute("y", v.kind === "output" ? n.y + 4 : n.y - 4);
      title.setAttribute("text-anchor", "middle");
      title.setAttribute("class", "title");
      title.textContent = boxTitle(v);
      group.appendChild(title);
      if (v.kind !== "output") {
        const detail = document.createElementNS(SVG, "text");
        detail.setAttribute("x", n.x);
        detail.setAttribute("y", n.y + 12);
        detail.setAttribute("text-anchor", "middle");
        detail.textContent = v.detail || "";
        group.appendChild(detail);
      }
      if (v.children) {
        const toggle = document.createElementNS(SVG, "text");
        toggle.setAttribute("x", n.x - n.width / 2 + 4);
        toggle.setAttribute("y", n.y - 4);
        toggle.setAttribute("class", "toggle");
        toggle.textContent = "\u25B8";
        toggle.addEventListener("click", (event) => { event.stopPropagation(); expanded.add(v.id); render(); });
        group.appendChild(toggle);
      }
      const tip = document.createElementNS(SVG, "title");
      tip.textContent = v.op === undefined ? v.title : `${v.title}: ${v.op}, ${v.params.toLocaleString("en")} parameters, MACs ${v.macs || "-"}, ` +
        `${(COLOURS[v.state] || COLOURS.none)[1]}${v.unfreezes ? " (" + v.unfreezes + ")" : ""}, groups: ${v.groups.join(", ") || "none"}` +
        (v.adapters.length ? `, adapters: ${v.adapters.join("; ")}` : "");
      group.appendChild(tip);
      group.addEventListener("click", () => select(v.id));
      svg.appendChild(group);
    }
    search(document.getElementById("search").value);
    if (selected) mark(selected);
  }

  function parentOf(id) {
    for (const v of data.vertices) if (v.children && v.children.nodes.some(c => c.id === id)) return v;
    return null;
  }

  function mark(id) {
    for (const el of document.querySelectorAll("g.vertex")) el.classList.toggle("selected", el.dataset.id === id);
  }

  function select(id) {
    selected = id;
    mark(id);
    const v = byId.get(id);
    const parent = parentOf(id);
    const box = document.getElementById("details");
    box.replaceChildren();
    const add = (tag, text, cls) => { const el = document.createElement(tag); el.textContent = text; if (cls) el.className = cls; box.appendChild(el); return el; };
    add("h2", v.title);
    if (parent) {
      const fold = add("button", `fold ${parent.title}`);
      fold.type = "button";
      fold.addEventListener("click", () => { expanded.delete(parent.id); selected = parent.id; render(); select(parent.id); });
    }
    if (v.kind === "node" || v.kind === "inner" || v.kind === "part") {
      const facts = [
        ["op", v.op], ["parameters", v.params.toLocaleString("en")], ["MACs per sample", v.macs || "-"],
        ["state", (COLOURS[v.state] || COLOURS.none)[1] + (v.unfreezes ? ` (${v.unfreezes})` : "")],
        ["learning-rate groups", v.groups.length ? v.groups.join(", ") : "none (frozen or no parameters)"],
      ];
      if (v.adapters.length) facts.push(["adapters (LoRA)", v.adapters.join("\n")]);
      const table = document.createElement("table");
      for (const [k, val] of facts) { const tr = table.insertRow(); tr.insertCell().textContent = k; tr.insertCell().textContent = val; }
      box.appendChild(table);
    } else add("p", v.detail);
    if (v.spec) {
      add("h3", `spec, line ${v.spec.line}`);
      add("pre", v.spec.text.map((t, i) => `${String(v.spec.line + i).padStart(4)}  ${t}`).join("\n"), "spec-lines").dataset.line = v.spec.line;
    }
    if (v.code && v.code.length) {
      add("h3", "generated code");
      add("pre", v.code.map(([n, t]) => `${String(n).padStart(4)}  ${t}`).join("\n"), "code-lines");
    }
  }

  function search(text) {
    const query = text.trim().toLowerCase();
    let count = 0;
    for (const el of document.querySelectorAll("g.vertex")) {
      const v = byId.get(el.dataset.id);
      const hit = query && (v.title.toLowerCase().includes(query) || (v.op || v.detail || "").toLowerCase().includes(query));
      count += hit ? 1 : 0;
      el.classList.toggle("match", !!hit);
      el.classList.toggle("dimmed", !!query && !hit);
    }
    document.getElementById("matches").textContent = query ? `${count} match${count === 1 ? "" : "es"}` : "";
  }

  function planTable() {
    const plan = data.plan;
    const box = document.getElementById("plan-table");
    const head = document.createElement("p");
    head.textContent = `optimizer: ${plan.optimizer}; schedule: ${plan.schedule}; EMA: ${plan.ema || "none"}`;
    box.appendChild(head);
    const table = document.createElement("table");
    const withAdapters = plan.groups.some(row => row.adapters.length);
    const cols = ["#", "parameters", "count", "rate", ...plan.boundaries.map(b => "lr @ " + b), "weight decay", "BatchNorm"];
    if (withAdapters) cols.push("adapters");
    const tr = table.createTHead().insertRow();
    for (const c of cols) { const th = document.createElement("th"); th.textContent = c; tr.appendChild(th); }
    const body = table.createTBody();
    plan.groups.forEach((row, i) => {
      const cells = [i, row.holds, row.params.toLocaleString("en"), row.rate, ...row.at,
        row.weight_decay === null ? "-" : `${row.weight_decay} (${row.decay_rule})`, row.batchnorm];
      if (withAdapters) cells.push(row.adapters_text || "-");
      const r = body.insertRow();
      cells.forEach((c, k) => { const td = r.insertCell(); td.textContent = c; if (k === 2) td.className = "num"; });
    });
    box.appendChild(table);
    const frozen = Object.entries(plan.frozen);
    if (frozen.length) {
      const p = document.createElement("p");
      p.textContent = "frozen (no gradient, never updated): " + frozen.map(([n, c]) => `${n} ${c.toLocaleString("en")}`).join(", ");
      box.appendChild(p);
    }
  }

  document.getElementById("name").textContent = `${data.name} (${data.spec})`;
  const legend = document.getElementById("legend");
  for (const [key, [colour, text]] of Object.entries(COLOURS)) {
    const item = document.createElement("span");
    item.className = "legend-item";
    item.innerHTML = `<span class="swatch" style="background:${colour}"></span>`;
    item.append(text);
    legend.appendChild(item);
  }
  document.getElementById("search").addEventListener("input", (e) => search(e.target.value));
  document.getElementById("expand-all").addEventListener("click", () => { for (const v of data.vertices) if (v.children) expanded.add(v.id); render(); });
  document.getElementById("fold-all").addEventListener("click", () => { expanded.clear(); render(); });
  planTable();
  render();
  document.body.dataset.renderedMs = String(Math.round(performance.now()));
  document.body.dataset.rendered = "true";
})();
