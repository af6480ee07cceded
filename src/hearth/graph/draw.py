"""The graph as one self-contained interactive HTML page: nothing is fetched when it opens.

Positions come from networkx's spring layout; the page is an SVG with a few lines of inline
JavaScript written here: wheel to zoom, drag the background to pan, drag a node to move it,
hover an edge or node for its relation and provenance, click a node to highlight its
neighbours. Hand-written page and script; the layout is networkx's.
"""

from __future__ import annotations

import html
import json
from typing import Any

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{margin:0;font:13px system-ui,sans-serif;background:#fafafa}}
#bar{{position:fixed;top:0;left:0;right:0;padding:6px 10px;background:#fff;
border-bottom:1px solid #ddd}}
svg{{width:100vw;height:100vh;cursor:grab}}
.e line{{stroke:#999;stroke-width:1.4}} .e text{{fill:#777;font-size:10px}}
.n circle{{fill:#4a7bd0;stroke:#fff;stroke-width:1.5;cursor:pointer}}
.n text{{font-size:12px;fill:#222;pointer-events:none}}
.dim{{opacity:.12}} .hi circle{{fill:#e0662a}} .hi line{{stroke:#e0662a;stroke-width:2.4}}
#tip{{position:fixed;display:none;max-width:420px;background:#222;color:#fff;padding:6px 8px;
border-radius:4px;pointer-events:none;white-space:pre-wrap}}
</style></head><body>
<div id="bar"><b>{title}</b> &middot; {n_nodes} entities, {n_edges} triples &middot;
wheel: zoom, drag: pan / move, hover: provenance, click: neighbours</div>
<svg id="g"><defs><marker id="arrow" viewBox="0 0 10 10" refX="16" refY="5" markerWidth="7"
markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#999"/></marker></defs>
<g id="view"></g></svg><div id="tip"></div>
<script>
const DATA = {data};
const NS = "http://www.w3.org/2000/svg";
const svg = document.getElementById("g"), view = document.getElementById("view");
const tip = document.getElementById("tip");
let scale = 1, tx = 0, ty = 40, panning = null, dragging = null, moved = false;
function el(tag, attrs, parent) {{
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  parent.appendChild(e); return e;
}}
function apply() {{ view.setAttribute("transform", `translate(${{tx}},${{ty}}) scale(${{scale}})`); }}
const W = window.innerWidth, H = window.innerHeight - 40;
const pos = DATA.nodes.map(n => ({{x: (n.x + 1) / 2 * (W - 160) + 80, y: (n.y + 1) / 2 * (H - 80) + 40}}));
const edges = DATA.edges.map(d => {{
  const g = el("g", {{class: "e"}}, view);
  const line = el("line", {{"marker-end": "url(#arrow)"}}, g);
  const label = el("text", {{"text-anchor": "middle"}}, g);
  label.textContent = d.relation;
  g.addEventListener("mousemove", ev => show(ev, `${{DATA.nodes[d.s].name}} —${{d.relation}}→ ${{DATA.nodes[d.o].name}}\\n${{d.source}} chars ${{d.start}}-${{d.end}} (chunk ${{d.chunk_id}})\\n“${{d.evidence}}”`));
  g.addEventListener("mouseleave", hide);
  return {{d, g, line, label}};
}});
const nodes = DATA.nodes.map((n, i) => {{
  const g = el("g", {{class: "n"}}, view);
  el("circle", {{r: 6 + Math.min(10, n.degree)}}, g);
  const t = el("text", {{dx: 10, dy: 4}}, g); t.textContent = n.name;
  g.addEventListener("mousedown", ev => {{ ev.stopPropagation(); dragging = i; moved = false; }});
  g.addEventListener("click", () => {{ if (!moved) highlight(i); }});
  g.addEventListener("mousemove", ev => show(ev, n.name + (n.aliases.length ? "\\naliases: " + n.aliases.join(", ") : "") + `\\n${{n.degree}} triple(s)`));
  g.addEventListener("mouseleave", hide);
  return {{n, g}};
}});
function draw() {{
  nodes.forEach((o, i) => o.g.setAttribute("transform", `translate(${{pos[i].x}},${{pos[i].y}})`));
  edges.forEach(o => {{
    const a = pos[o.d.s], b = pos[o.d.o];
    o.line.setAttribute("x1", a.x); o.line.setAttribute("y1", a.y);
    o.line.setAttribute("x2", b.x); o.line.setAttribute("y2", b.y);
    o.label.setAttribute("x", (a.x + b.x) / 2); o.label.setAttribute("y", (a.y + b.y) / 2 - 3);
  }});
}}
let selected = null;
function highlight(i) {{
  selected = selected === i ? null : i;
  const near = new Set([i]);
  edges.forEach(o => {{ if (o.d.s === i || o.d.o === i) {{ near.add(o.d.s); near.add(o.d.o); }} }});
  nodes.forEach((o, j) => {{
    o.g.classList.toggle("dim", selected !== null && !near.has(j));
    o.g.classList.toggle("hi", selected !== null && j === i);
  }});
  edges.forEach(o => {{
    const on = o.d.s === i || o.d.o === i;
    o.g.classList.toggle("dim", selected !== null && !on);
    o.g.classList.toggle("hi", selected !== null && on);
  }});
}}
function show(ev, text) {{
  tip.textContent = text; tip.style.display = "block";
  tip.style.left = ev.clientX + 12 + "px"; tip.style.top = ev.clientY + 12 + "px";
}}
function hide() {{ tip.style.display = "none"; }}
svg.addEventListener("mousedown", ev => {{ panning = {{x: ev.clientX - tx, y: ev.clientY - ty}}; }});
window.addEventListener("mousemove", ev => {{
  if (dragging !== null) {{
    moved = true;
    pos[dragging].x = (ev.clientX - tx) / scale; pos[dragging].y = (ev.clientY - ty) / scale; draw();
  }} else if (panning) {{ tx = ev.clientX - panning.x; ty = ev.clientY - panning.y; apply(); }}
}});
window.addEventListener("mouseup", () => {{ dragging = null; panning = null; }});
svg.addEventListener("wheel", ev => {{
  ev.preventDefault();
  const f = ev.deltaY < 0 ? 1.15 : 1 / 1.15;
  tx = ev.clientX - (ev.clientX - tx) * f; ty = ev.clientY - (ev.clientY - ty) * f;
  scale *= f; apply();
}}, {{passive: false}});
apply(); draw();
</script></body></html>
"""  # noqa: E501 - the page's script reads better unwrapped


def layout(triples: list[dict[str, Any]], aliases: dict[str, list[str]] | None = None) -> dict:
    """Nodes (name, aliases, degree, x, y in [-1, 1]) and edges (indexes + provenance)."""
    import networkx as nx

    graph = nx.MultiDiGraph()
    for t in triples:
        graph.add_edge(t["subject"], t["object"])
    names = sorted(graph.nodes)
    index = {n: i for i, n in enumerate(names)}
    pos = nx.spring_layout(graph, seed=7) if names else {}
    nodes = [
        {
            "name": n,
            "aliases": (aliases or {}).get(n, []),
            "degree": graph.degree(n),
            "x": round(float(pos[n][0]), 4),
            "y": round(float(pos[n][1]), 4),
        }
        for n in names
    ]
    edges = [
        {
            "s": index[t["subject"]],
            "o": index[t["object"]],
            **{k: t.get(k) for k in ("relation", "source", "start", "end", "chunk_id")},
            "evidence": t.get("evidence", ""),
        }
        for t in triples
    ]
    return {"nodes": nodes, "edges": edges}


def render_html(
    triples: list[dict[str, Any]],
    *,
    aliases: dict[str, list[str]] | None = None,
    title: str = "Hearth knowledge graph",
) -> str:
    data = layout(triples, aliases)
    # "</" cannot end the script early inside the JSON
    blob = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    return PAGE.format(
        title=html.escape(title),
        n_nodes=len(data["nodes"]),
        n_edges=len(data["edges"]),
        data=blob,
    )
