// The data graph: laid out once with dagre (left to right, layered) and drawn as SVG from the
// JSON the page embeds. A live refresh brings a new <main>: the drawing already made is moved
// into it and re-coloured, so nodes never jump while the user reads them.
"use strict";
(() => {
  const NS = "http://www.w3.org/2000/svg";
  const NAME_FONT = '600 12px system-ui, -apple-system, "Segoe UI", sans-serif';
  const SUB_FONT = '10.5px system-ui, -apple-system, "Segoe UI", sans-serif';
  const PAD = 12;
  const HEIGHT = 40;
  const MIN_SCALE = 0.1;
  const MAX_SCALE = 3;
  const view = { key: null, svg: null, nodes: new Map(), width: 0, height: 0, scale: 1, left: 0, top: 0, layouts: 0 };
  const ctx = document.createElement("canvas").getContext("2d");

  function textWidth(text, font) {
    ctx.font = font;
    return ctx.measureText(text).width;
  }

  function el(name, attrs, parent) {
    const made = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs)) made.setAttribute(k, v);
    if (parent) parent.append(made);
    return made;
  }

  function layout(graph) {
    const g = new dagre.graphlib.Graph();
    g.setGraph({ rankdir: "LR", nodesep: 16, ranksep: 70, edgesep: 12, marginx: 24, marginy: 24 });
    g.setDefaultEdgeLabel(() => ({}));
    for (const node of graph.nodes) {
      // wide enough for the name and for the longest state line it may show later
      const sub = node.sub.replace(/·.*$/, "· requested");
      const width = Math.max(textWidth(node.name, NAME_FONT), textWidth(sub, SUB_FONT), textWidth(node.sub, SUB_FONT));
      g.setNode(node.id, { width: Math.ceil(width) + 2 * PAD, height: HEIGHT });
    }
    for (const [source, target] of graph.edges) g.setEdge(source, target);
    dagre.layout(g);
    view.layouts += 1;
    document.body.dataset.layouts = String(view.layouts);
    return g;
  }

  function draw(graph, g) {
    const { width, height } = g.graph();
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
    const defs = el("defs", {}, svg);
    const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8d99a6" }, marker);
    const edges = el("g", { class: "edges" }, svg);
    for (const e of g.edges()) {
      const points = g.edge(e).points;
      const d = points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
      el("path", { class: "edge", d, "marker-end": "url(#arrow)", "data-source": e.v, "data-target": e.w }, edges);
    }
    const layer = el("g", { class: "nodes" }, svg);
    view.nodes = new Map();
    for (const node of graph.nodes) {
      const box = g.node(node.id);
      const x = box.x - box.width / 2;
      const y = box.y - box.height / 2;
      const link = el("a", { class: `node ${node.kind}`, "data-id": node.id, "data-kind": node.kind }, layer);
      el("title", {}, link);
      el("rect", { x, y, width: box.width, height: box.height, rx: node.kind === "dataset" ? 14 : 3 }, link);
      el("text", { class: "name", x: x + PAD, y: y + 16 }, link).textContent = node.name;
      el("text", { class: "sub", x: x + PAD, y: y + 31 }, link);
      view.nodes.set(node.id, link);
    }
    view.svg = svg;
    view.width = width;
    view.height = height;
  }

  function colour(graph) {
    for (const node of graph.nodes) {
      const link = view.nodes.get(node.id);
      link.setAttribute("class", `node ${node.kind} ${node.state}`);
      link.dataset.state = node.state;
      link.setAttribute("href", node.href);
      link.querySelector("title").textContent = `${node.name}: ${node.title}`;
      link.querySelector(".sub").textContent = node.sub;
    }
  }

  function box() { return document.getElementById("graph"); }

  function apply() {
    view.svg.setAttribute("width", String(Math.round(view.width * view.scale)));
    view.svg.setAttribute("height", String(Math.round(view.height * view.scale)));
    const area = box();
    if (area) area.dataset.scale = view.scale.toFixed(3);
  }

  function fitScale() {
    const area = box();
    const s = Math.min(area.clientWidth / view.width, area.clientHeight / view.height);
    return Math.max(MIN_SCALE, Math.min(s, 1.5));
  }

  // Zoom keeping the point of the graph under (px, py) of the area where it is.
  function zoom(scale, px, py) {
    const area = box();
    scale = Math.max(MIN_SCALE, Math.min(MAX_SCALE, scale));
    if (px === undefined) { px = area.clientWidth / 2; py = area.clientHeight / 2; }
    const gx = (area.scrollLeft + px) / view.scale;
    const gy = (area.scrollTop + py) / view.scale;
    view.scale = scale;
    apply();
    area.scrollLeft = gx * scale - px;
    area.scrollTop = gy * scale - py;
  }

  function fit() {
    view.scale = fitScale();
    apply();
    box().scrollLeft = 0;
    box().scrollTop = 0;
  }

  function watch(area) {
    area.addEventListener("scroll", () => { view.left = area.scrollLeft; view.top = area.scrollTop; });
    area.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = area.getBoundingClientRect();
      zoom(view.scale * (e.deltaY < 0 ? 1.15 : 1 / 1.15), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    let drag = null;
    area.addEventListener("pointerdown", (e) => {
      if (e.button !== 0 || e.target.closest(".node")) return;
      drag = { x: e.clientX, y: e.clientY, left: area.scrollLeft, top: area.scrollTop };
      area.classList.add("dragging");
    });
    area.addEventListener("pointermove", (e) => {
      if (!drag) return;
      area.scrollLeft = drag.left - (e.clientX - drag.x);
      area.scrollTop = drag.top - (e.clientY - drag.y);
    });
    const end = () => { drag = null; area.classList.remove("dragging"); };
    area.addEventListener("pointerup", end);
    area.addEventListener("pointerleave", end);
  }

  function mount() {
    const area = box();
    const source = document.getElementById("graph-data");
    if (!area || !source) return;
    const graph = JSON.parse(source.textContent);
    const key = JSON.stringify([graph.nodes.map((n) => n.id), graph.edges]);
    const first = view.key !== key;
    if (first) {
      view.key = key;
      draw(graph, layout(graph));
    }
    colour(graph);
    area.append(view.svg);
    watch(area);
    if (first) {
      // readable first: fit only when the graph is small enough to stay legible
      view.scale = Math.max(Math.min(fitScale(), 1), 0.75);
      apply();
    } else {
      apply();
      area.scrollLeft = view.left;
      area.scrollTop = view.top;
    }
    area.dataset.ready = String(view.layouts);
  }

  document.addEventListener("click", (e) => {
    const id = e.target.closest("button")?.id;
    if (id === "zoom-in") zoom(view.scale * 1.25);
    else if (id === "zoom-out") zoom(view.scale / 1.25);
    else if (id === "zoom-fit") fit();
  });
  document.addEventListener("change", (e) => {
    if (e.target.id === "graph-partition") e.target.form.submit();
  });
  document.addEventListener("ef:refreshed", mount);
  mount();
})();
