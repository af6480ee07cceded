"""A self-contained HTML report of an evaluation: mean metrics per strategy (bars), each metric's
distribution per strategy, and the per-row table with fallback-scored metrics marked.

Hand-written: one page of HTML around matplotlib PNGs embedded as base64, so the file opens
offline with nothing fetched (no CDN, no scripts).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from hearth.evaluate.fallback import METRICS

__all__ = ["render_report", "write_report"]

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;
vertical-align:top}th{background:#f3f3f3}td.num{text-align:right}td.fb{background:#ffe9b3}
.q{max-width:380px}img{max-width:100%}"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _label(name: Any) -> str:
    return "default" if name is None else str(name)


def _plots(result: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    names = list(dict.fromkeys(r.get("strategy") for r in rows)) or [None]
    by = result.get("by_strategy") or {_label(names[0]): result["mean"]}
    metrics = [m for m in METRICS]
    retrieval = sorted({k for r in rows for k in r if "@" in k})

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / max(1, len(by))
    for i, (name, mean) in enumerate(by.items()):
        xs = [j + i * width for j in range(len(metrics + retrieval))]
        ax.bar(xs, [mean.get(m, 0.0) for m in metrics + retrieval], width, label=_label(name))
    ax.set_xticks([j + width * (len(by) - 1) / 2 for j in range(len(metrics + retrieval))])
    ax.set_xticklabels(metrics + retrieval, rotation=20)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("mean")
    ax.set_title("Mean metrics per strategy")
    ax.legend()
    bars = _png(fig)

    fig, axes = plt.subplots(1, len(metrics), figsize=(12, 3.5), sharey=True)
    for ax, metric in zip(axes, metrics, strict=True):
        data = [[r[metric] for r in rows if r.get("strategy") == n] for n in names]
        ax.boxplot(data, showmeans=True)  # labels set below: works on matplotlib 3.8 too
        ax.set_xticks(range(1, len(names) + 1), [_label(n) for n in names])
        for i, values in enumerate(data, start=1):
            ax.scatter([i] * len(values), values, s=10, alpha=0.5)
        ax.set_title(metric)
        ax.set_ylim(-0.05, 1.05)
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle("Distribution per strategy (box: quartiles, triangle: mean, dots: rows)", y=1.04)
    dist = _png(fig)
    return {"bars": bars, "dist": dist}


def render_report(result: dict[str, Any], title: str = "Hearth evaluation") -> str:
    """The report as one HTML string (images inline)."""
    plots = _plots(result)
    rows = result["rows"]
    retrieval = sorted({k for r in rows for k in r if "@" in k})
    cols = [*METRICS, *retrieval]
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p>judge: <b>{esc(str(result.get('judge', '')))}</b>; rows: {len(rows)}; "
        f"rows with a fallback-scored metric: {result.get('fallback_rows', 0)} "
        "(marked in the table)</p>",
        "<h2>Mean per strategy</h2>",
        f"<img alt='mean metrics per strategy' src='data:image/png;base64,{plots['bars']}'>",
    ]
    by = result.get("by_strategy") or {"default": result["mean"]}
    parts.append("<table><tr><th>strategy</th>")
    parts += [f"<th>{esc(c)}</th>" for c in [*cols, "seconds"]]
    parts.append("</tr>")
    for name, mean in by.items():
        cells = "".join(
            f"<td class='num'>{mean[c]:.3f}</td>" if c in mean else "<td></td>"
            for c in [*cols, "seconds"]
        )
        parts.append(f"<tr><td>{esc(_label(name))}</td>{cells}</tr>")
    parts.append("</table>")
    parts += [
        "<h2>Distributions</h2>",
        f"<img alt='metric distributions' src='data:image/png;base64,{plots['dist']}'>",
        "<h2>Rows</h2><table><tr><th>#</th><th>strategy</th><th>question</th><th>answer</th>",
    ]
    parts += [f"<th>{esc(c)}</th>" for c in cols]
    parts.append("<th>notes</th></tr>")
    for r in rows:
        fallback = set(r.get("fallback", []))
        cells = []
        for c in cols:
            if c not in r:
                cells.append("<td></td>")
                continue
            mark = " fb" if c in fallback else ""
            star = "*" if c in fallback else ""
            cells.append(f"<td class='num{mark}'>{float(r[c]):.3f}{star}</td>")
        notes = "; ".join(f"{k}: {v}" for k, v in (r.get("reasons") or {}).items())
        parts.append(
            f"<tr><td>{r.get('index', '') + 1 if isinstance(r.get('index'), int) else ''}</td>"
            f"<td>{esc(_label(r.get('strategy')))}</td>"
            f"<td class='q'>{esc(str(r.get('question', '')))}</td>"
            f"<td class='q'>{esc(str(r.get('answer', ''))[:400])}</td>{''.join(cells)}"
            f"<td class='q'>{esc(notes)}</td></tr>"
        )
    parts.append("</table><p>* scored by the non-LLM fallback (the judge failed)</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict[str, Any], path: str | Path, title: str = "Hearth evaluation"):
    """Write the HTML report to `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result, title), encoding="utf-8")
    return path
