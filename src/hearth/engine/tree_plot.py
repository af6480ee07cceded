"""Draw a beam-search tree as the decoding-strategies literature does: tokens with their
probabilities, parent -> child edges, kept / pruned / finished styled apart, best path in red.

Hand-written: a tidy-tree layout is a few lines, and the HTML is one self-contained file
(inline SVG + a little JS for hover), so it opens offline with no CDN.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from hearth.engine.decoding import BeamNode, BeamTree
from hearth.errors import ConfigError

Detokenize = Callable[[Sequence[int]], str]

STYLE = {  # status -> (fill, edge colour, line style)
    "kept": ("#dbeafe", "#1d4ed8", "solid"),
    "pruned": ("#f3f4f6", "#9ca3af", "dashed"),
    "finished": ("#dcfce7", "#15803d", "solid"),
}
BEST = "#dc2626"
ROOT = -1  # layout id of the prompt


def token_label(detokenize: Detokenize | None, token_id: int) -> str:
    """A token as readable text: whitespace made visible, empty pieces shown by id."""
    text = detokenize([token_id]) if detokenize else f"#{token_id}"
    text = text.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "\u2423")
    return text or f"#{token_id}"


def best_path(tree: BeamTree) -> set[int]:
    return {n.id for n in tree.path(tree.best)} if tree.finished else set()


def layout(tree: BeamTree) -> dict[int, tuple[float, float]]:
    """(x = step, y = row) for each node id and ROOT: leaves stacked in depth-first order,
    each parent centred on its children."""
    kids: dict[int, list[BeamNode]] = {}
    for n in tree.nodes:
        kids.setdefault(ROOT if n.parent is None else n.parent, []).append(n)
    pos: dict[int, tuple[float, float]] = {}
    next_row = 0.0
    # iterative post-order so deep trees do not hit the recursion limit
    stack: list[tuple[int, float, bool]] = [(ROOT, -1.0, False)]
    while stack:
        node, x, expanded = stack.pop()
        children = kids.get(node, [])
        if not children:
            pos[node] = (x, next_row)
            next_row += 1.0
        elif expanded:
            ys = [pos[c.id][1] for c in children]
            pos[node] = (x, (min(ys) + max(ys)) / 2)
        else:
            stack.append((node, x, True))
            ordered = sorted(children, key=lambda c: -c.prob)
            stack.extend((c.id, float(c.step), False) for c in reversed(ordered))
    return pos


def _check(tree: BeamTree, path: Path, suffix: str) -> None:
    if not tree.nodes:
        raise ConfigError("the beam tree is empty: nothing to draw")
    if path.suffix.lower() != suffix:
        raise ConfigError(f"{path}: expected a {suffix} file name")


def plot_png(
    tree: BeamTree,
    path: str | Path,
    detokenize: Detokenize | None = None,
    *,
    title: str = "Beam search",
) -> Path:
    """Write the tree as a PNG with matplotlib (Agg backend; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    path = Path(path)
    _check(tree, path, ".png")
    pos = layout(tree)
    best = best_path(tree)
    steps = max(n.step for n in tree.nodes) + 2
    rows = max(y for _, y in pos.values()) + 1
    width, height = min(2 + 1.5 * steps, 120), min(1.5 + 0.32 * rows, 120)
    dpi = max(40, min(100, int(12000 / max(width, height))))
    fig, ax = plt.subplots(figsize=(width, height), dpi=dpi)
    for n in tree.nodes:
        x0, y0 = pos[ROOT if n.parent is None else n.parent]
        x1, y1 = pos[n.id]
        on_best = n.id in best
        _, colour, style = STYLE[n.status]
        ax.plot(
            [x0, x1],
            [y0, y1],
            color=BEST if on_best else colour,
            linestyle=style,
            linewidth=2.5 if on_best else 0.8,
            alpha=1.0 if n.status != "pruned" or on_best else 0.6,
            zorder=2 if on_best else 1,
        )
    for n in tree.nodes:
        fill, colour, _ = STYLE[n.status]
        on_best = n.id in best
        ax.text(
            *pos[n.id],
            f"{token_label(detokenize, n.token_id)}\n{n.prob:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="#6b7280" if n.status == "pruned" else "black",
            fontweight="bold" if on_best else "normal",
            bbox={
                "boxstyle": "round,pad=0.25",
                "facecolor": fill,
                "edgecolor": BEST if on_best else colour,
                "linewidth": 1.8 if on_best else 0.8,
            },
            zorder=3,
        )
    prompt = detokenize(tree.prompt_ids) if detokenize else f"{len(tree.prompt_ids)} tokens"
    prompt = prompt if len(prompt) <= 24 else "\u2026" + prompt[-23:]
    ax.text(*pos[ROOT], prompt.replace("\n", "\\n"), ha="right", va="center", fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "#fef3c7", "edgecolor": "#92400e"})  # fmt: skip
    legend = [Line2D([], [], color=STYLE[s][1], linestyle=STYLE[s][2], label=s) for s in STYLE] + [
        Line2D([], [], color=BEST, linewidth=2.5, label="best path")
    ]
    ax.legend(handles=legend, loc="upper right", fontsize=8)
    ax.set_title(f"{title}: {len(tree.nodes)} candidates, {len(tree.finished)} finished")
    ax.set_xlim(-2.5, steps)
    ax.set_ylim(rows, -1)
    ax.set_xlabel("step (token position after the prompt)")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_html(
    tree: BeamTree,
    path: str | Path,
    detokenize: Detokenize | None = None,
    *,
    title: str = "Beam search",
) -> Path:
    """Write the tree as one self-contained HTML page: inline SVG, hover shows the details
    and lights up the path from the prompt to that token."""
    path = Path(path)
    _check(tree, path, ".html")
    pos = layout(tree)
    best = best_path(tree)
    dx, dy, pad = 110.0, 34.0, 20.0

    def xy(node: int) -> tuple[float, float]:
        x, y = pos[node]
        return pad + (x + 2) * dx, pad + y * dy

    edges, boxes, info = [], [], {}
    for n in tree.nodes:
        (x0, y0), (x1, y1) = xy(ROOT if n.parent is None else n.parent), xy(n.id)
        _, colour, style = STYLE[n.status]
        cls = f"e {n.status}" + (" best" if n.id in best else "")
        dash = ' stroke-dasharray="4 3"' if style == "dashed" else ""
        edges.append(
            f'<line id="e{n.id}" class="{cls}" x1="{x0 + 44:.0f}" y1="{y0:.0f}" '
            f'x2="{x1 - 44:.0f}" y2="{y1:.0f}" stroke="{colour}"{dash}/>'
        )
        label = token_label(detokenize, n.token_id)
        short = label if len(label) <= 10 else label[:9] + "\u2026"
        fill = STYLE[n.status][0]
        boxes.append(
            f'<g id="n{n.id}" class="n {cls[2:]}" data-id="{n.id}">'
            f'<rect x="{x1 - 44:.0f}" y="{y1 - 13:.0f}" width="88" height="26" rx="6" '
            f'fill="{fill}" stroke="{colour}"/>'
            f'<text x="{x1:.0f}" y="{y1 + 4:.0f}">{html.escape(short)} '
            f'<tspan class="p">{n.prob:.2f}</tspan></text></g>'
        )
        info[n.id] = {
            "token": label,
            "id": n.token_id,
            "p": round(n.prob, 4),
            "score": round(n.score, 3),
            "step": n.step,
            "status": n.status,
            "parent": n.parent,
        }
    prompt = detokenize(tree.prompt_ids) if detokenize else f"{len(tree.prompt_ids)} tokens"
    rx, ry = xy(ROOT)
    width = pad * 2 + (max(x for x, _ in pos.values()) + 3) * dx
    height = pad * 2 + (max(y for _, y in pos.values()) + 1) * dy
    short_prompt = prompt if len(prompt) <= 14 else "\u2026" + prompt[-13:]
    root = (
        f'<g class="n root"><rect x="{rx - 100:.0f}" y="{ry - 13:.0f}" width="144" height="26" '
        f'rx="6" fill="#fef3c7" stroke="#92400e"/><text x="{rx - 28:.0f}" y="{ry + 4:.0f}">'
        f"{html.escape(short_prompt)}</text><title>{html.escape(prompt)}</title></g>"
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}">'
        + "".join(edges)
        + root
        + "".join(boxes)
        + "</svg>"
    )
    page = _PAGE.format(
        title=html.escape(title),
        summary=html.escape(
            f"{len(tree.nodes)} candidates, {len(tree.finished)} finished; prompt: {prompt!r}"
        ),
        svg=svg,
        data=json.dumps(info).replace("</", "<\\/"),
    )
    path.write_text(page, encoding="utf-8")
    return path


def plot_tree(
    tree: BeamTree, path: str | Path, detokenize: Detokenize | None = None, **kw: str
) -> Path:
    """PNG or HTML by the file name's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix == ".png":
        return plot_png(tree, path, detokenize, **kw)
    if suffix in (".html", ".htm"):
        return plot_html(tree, Path(path).with_suffix(".html"), detokenize, **kw)
    raise ConfigError(f"--tree {path}: use a .png or .html file name")


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:12px}}
svg text{{font:12px ui-monospace,monospace;text-anchor:middle;pointer-events:none}}
svg .root text{{text-anchor:middle}}
.p{{fill:#6b7280;font-size:10px}}
line{{stroke-width:1.2}} line.pruned{{opacity:.55}}
line.best{{stroke:#dc2626;stroke-width:3}} g.best rect{{stroke:#dc2626;stroke-width:2.2}}
g.pruned text{{fill:#6b7280}} g.n{{cursor:pointer}}
.hl rect{{stroke:#f59e0b!important;stroke-width:3!important}}
line.hl{{stroke:#f59e0b!important;stroke-width:4!important;opacity:1}}
#tip{{position:fixed;background:#111827;color:#fff;padding:6px 9px;border-radius:6px;
font:12px ui-monospace,monospace;white-space:pre;display:none;pointer-events:none}}
.legend span{{display:inline-block;margin-right:14px}}
.legend i{{display:inline-block;width:14px;height:10px;margin-right:4px;border:1px solid}}
</style></head><body>
<h2>{title}</h2><p>{summary}</p>
<p class="legend"><span><i style="background:#dbeafe;border-color:#1d4ed8"></i>kept</span>
<span><i style="background:#f3f4f6;border-color:#9ca3af;border-style:dashed"></i>pruned</span>
<span><i style="background:#dcfce7;border-color:#15803d"></i>finished</span>
<span><i style="background:#fff;border-color:#dc2626;border-width:2px"></i>best path</span>
&mdash; hover a token for its details and its path</p>
<div id="tree">{svg}</div><div id="tip"></div>
<script>
const NODES = {data};
const tip = document.getElementById("tip");
function path(id) {{ const out = []; while (id !== null && id !== undefined) {{
  out.push(id); id = NODES[id].parent; }} return out; }}
function mark(id, on) {{ for (const k of path(id)) {{
  document.getElementById("n" + k).classList.toggle("hl", on);
  document.getElementById("e" + k).classList.toggle("hl", on); }} }}
document.querySelectorAll("g.n[data-id]").forEach(g => {{
  const id = g.dataset.id;
  g.addEventListener("mouseenter", () => {{ const d = NODES[id];
    tip.textContent = `token ${{JSON.stringify(d.token)}} (id ${{d.id}})\\n` +
      `p = ${{d.p}}   score = ${{d.score}}\\nstep ${{d.step}}, ${{d.status}}`;
    tip.style.display = "block"; mark(id, true); }});
  g.addEventListener("mousemove", e => {{ tip.style.left = (e.clientX + 14) + "px";
    tip.style.top = (e.clientY + 14) + "px"; }});
  g.addEventListener("mouseleave", () => {{ tip.style.display = "none"; mark(id, false); }});
}});
</script></body></html>
"""
