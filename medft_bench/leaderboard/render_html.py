"""``leaderboard.html``: one static page with every table and plot (PNGs by relative link, next to it).

No script and no external resource: it opens from the folder as it is, offline. Wide tables scroll
sideways inside their own box; the page itself never does.
"""

from __future__ import annotations

from html import escape
from typing import Any

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.metadata import metadata_lines
from medft_bench.leaderboard.render_markdown import INDEX, REFERENCES
from medft_bench.leaderboard.tables import (
    Table,
    group_tables,
    notes_table,
    problems_table,
    recommendation_tables,
    survival_tables,
)

HTML = "leaderboard.html"
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1400px;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.4rem 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.25rem 0.6rem; vertical-align: top; }
th { background: #f4f4f4; text-align: left; white-space: nowrap; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.key { white-space: nowrap; }
.best { font-weight: bold; color: #176b21; } .pos { color: #176b21; } .neg { color: #b3261e; }
.warn { color: #8a5a00; background: #fff6dc; } .muted { color: #777; }
.caption { font-style: italic; color: #444; } .notes { font-size: 0.8rem; color: #555; }
.caution { border-left: 4px solid #c0392b; background: #fdf0ef; padding: 0.4rem 0.8rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav a { margin-right: 1rem; }
"""


def _table(table: Table) -> str:
    head = "".join(f'<th class="{col.align}">{escape(col.header)}</th>' for col in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for col, cell in zip(table.columns, row):
            classes = " ".join(x for x in (col.align, "key" if col.key else "", cell.style or "") if x)
            cells.append(f'<td class="{classes}">{escape(cell.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    out = [f'<h3 id="{escape(table.key)}">{escape(table.title)}</h3>']
    if table.caption:
        out.append(f'<p class="caption">{escape(table.caption)}</p>')
    out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
               "</div>")
    if table.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(out)


def _plots(files: dict[str, str]) -> str:
    captions = {"delta": "Δ against FT in percentage points, strategies × cases (grey: no result).",
                "pareto": "Mean test metric against mean training time per seed; the red line joins strategies "
                          "that no other strategy beats on both."}
    out = []
    for kind in ("delta", "pareto"):
        if kind in files:
            out.append(f'<figure><img src="{escape(files[kind])}" alt="{escape(captions[kind])}">'
                       f"<figcaption class=\"notes\">{escape(captions[kind])}</figcaption></figure>")
    return "\n".join(out)


def html_page(groups: list[Group], inputs: Inputs, meta: dict[str, Any], all_metrics: bool,
              plots: dict[str, dict[str, str]]) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>medft-bench leaderboard</title>", f"<style>{CSS}</style></head><body>",
           "<h1>medft-bench leaderboard</h1>",
           f'<nav><a href="{INDEX}">Markdown pages</a><a href="{REFERENCES}">published reference numbers</a>'
           '<a href="summary.json">summary.json</a><a href="records.csv">records.csv</a>'
           '<a href="aggregates.csv">aggregates.csv</a></nav>',
           "<h2>Run metadata</h2><ul>"]
    out += [f"<li><b>{escape(label)}</b>: {escape(text)}</li>" for label, text in metadata_lines(meta)]
    out.append("</ul>")
    recs = recommendation_tables(groups)
    if recs:
        out.append('<h2 id="recommendations">Which strategy for my modality and backbone?</h2>')
        out += [_table(t) for t in recs]
    for g in groups:
        out.append(f'<h2 id="{escape(g.key.slug)}">{escape(g.key.label)}</h2>')
        if g.key.caveat:
            out.append(f'<p class="caution"><b>Caution — {escape(g.key.caveat)}.</b></p>')
        out += [_table(t) for t in group_tables(g, all_metrics)]
        files = plots.get(g.key.slug, {})
        if files:
            out += [f"<h3>Plots — {escape(g.key.label)}</h3>", _plots(files)]
    survive = survival_tables(groups)
    if survive:
        out.append("<h2>Does it survive tuning?</h2>")
        out += [_table(t) for t in survive]
    extras = [t for t in (problems_table(inputs), notes_table(inputs)) if t is not None]
    if extras:
        out.append("<h2>Inputs</h2>")
        out += [_table(t) for t in extras]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
