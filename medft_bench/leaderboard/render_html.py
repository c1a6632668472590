"""``leaderboard.html``: one static page with every table and plot (PNGs by relative link, next to it).

No script and no external resource: it opens from the folder as it is, offline. A one-paragraph table of
contents on top (sections only, each group lists its tables under its heading), then the answer, each group's
cost plot beside its answer table, all on the first screen at 1280 x 800; headers and text cells wrap so that tables
fit the page (numbers never wrap; a table still too wide scrolls inside its own box, the page never does).
Every id is unique: a table's is its group's slug and its key.
"""

from __future__ import annotations

from html import escape
from typing import Any

from medft_bench.leaderboard.metadata import metadata_lines
from medft_bench.leaderboard.page import Figure, Item, Page, Section
from medft_bench.leaderboard.render_markdown import INDEX, REFERENCES
from medft_bench.leaderboard.tables.model import Table

HTML = "leaderboard.html"
FILES = (f'<a href="{INDEX}">Markdown pages</a><a href="{REFERENCES}">published reference numbers</a>'
         '<a href="summary.json">summary.json</a><a href="records.csv">records.csv</a>'
         '<a href="aggregates.csv">aggregates.csv</a>')
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1400px;
       padding: 0 1rem; color: #1b1b1b; line-height: 1.4; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.4rem 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 0.25rem 0.45rem; vertical-align: top; }
th { background: #f4f4f4; text-align: left; white-space: normal; min-width: 3.5em; }
td.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; } th.r { text-align: right; }
td.key { white-space: nowrap; }
.best { font-weight: bold; color: #176b21; } .pos { color: #176b21; } .neg { color: #b3261e; }
.warn { color: #8a5a00; background: #fff6dc; } .muted { color: #777; }
.caption { font-style: italic; color: #444; } .notes { font-size: 0.8rem; color: #555; }
.caution { border-left: 4px solid #c0392b; background: #fdf0ef; padding: 0.4rem 0.8rem; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
nav a { margin-right: 1rem; } nav { display: flex; flex-wrap: wrap; gap: 0.2rem 0; }  /* a phone: links wrap */
/* a table wider than its box scrolls under its first column, which stays put: a row keeps its name in view */
.scroll th:first-child, .scroll td:first-child { position: sticky; left: 0; z-index: 1; background: #fff;
  box-shadow: 1px 0 0 #e3e3e3; } .scroll th:first-child { background: #f4f4f4; }
nav.toc, nav.subtoc { font-size: 0.9rem; background: #fafafa; border: 1px solid #e3e3e3; padding: 0.4rem 1rem; }
nav.toc a, nav.subtoc a { margin-right: 0; } nav.toc .sep, nav.subtoc .sep { color: #999; margin: 0 0.4rem; }
.answer { display: flex; flex-direction: column; gap: 1rem; }  /* the table whole, its plot under it */
.answer > div { min-width: 0; overflow-x: auto; } .answer figure { margin: 0; max-width: 60rem; }
.answer td { white-space: nowrap; }  /* an answer row reads as one line: "-2.23 p=0.14", "GU last-to-first" */
details.phone { display: none; font-size: 0.9rem; border: 1px solid #e3e3e3; padding: 0.3rem 0.6rem; }
details.phone nav { display: block; } details.phone a { display: block; margin: 0.2rem 0; }
@media (max-width: 700px) {  /* a phone: links and contents fold into one line, so the answer is the first screen */
  body { margin: 0.6rem auto; } h1 { font-size: 1.2rem; margin: 0.3rem 0; } h2 { font-size: 1.1rem; }
  h3 { font-size: 0.95rem; } .wide { display: none; } details.phone { display: block; }
  .intro, .caption { font-size: 0.85rem; } .caution { font-size: 0.85rem; padding: 0.2rem 0.5rem; }
  /* a plot at its own size (its text 9 pt at 100 dpi), scrolled sideways: shrunk to 390 px its text is ~4 px */
  figure { overflow-x: auto; margin: 0.5rem 0; } figure img { max-width: none; }
}
"""


def _id(prefix: str, key: str) -> str:
    return escape(f"{prefix}-{key}" if prefix else key)


def _table(table: Table, prefix: str = "") -> str:
    head = "".join(f'<th class="{col.align}">{escape(col.header)}</th>' for col in table.columns)
    body = []
    for row in table.rows:
        cells = []
        for col, cell in zip(table.columns, row):
            classes = " ".join(x for x in (col.align, "key" if col.key else "", cell.style or "") if x)
            cells.append(f'<td class="{classes}">{escape(cell.text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    out = [f'<h3 id="{_id(prefix, table.key)}">{escape(table.title)}</h3>']
    if table.caption:
        out.append(f'<p class="caption">{escape(table.caption)}</p>')
    out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
               "</div>")
    if table.notes:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in table.notes) + "</ul>")
    return "\n".join(out)


def _figure(figure: Figure | None) -> str:
    if figure is None:
        return ""
    return (f'<figure><img src="{escape(figure.file)}" alt="{escape(figure.title)}">'
            f'<figcaption class="notes"><b>{escape(figure.title)}</b>. {escape(figure.caption)}</figcaption></figure>')


def _toc(sections: list[tuple[str, str]], label: str = "Contents", cls: str = "toc") -> str:
    """A one-paragraph list of links, (anchor, title) each: the page's sections on top (so that the answer
    below is on the first screen), a group's tables under its heading."""
    links = '<span class="sep">·</span>'.join(f'<a href="#{a}">{escape(t)}</a>' for a, t in sections)
    return f'<nav class="{cls}" aria-label="{escape(label.lower())}"><b>{escape(label)}:</b> {links}</nav>'


def _prefix(section: Section, item: Item) -> str:
    """A table's id prefix: its group's slug (tables of one key recur across groups), else its section's id."""
    return item.group.key.slug if item.group is not None else section.id


def _section(section: Section, pareto: dict[str, Figure]) -> list[str]:
    out = [f'<h2 id="{escape(section.id)}">{escape(section.heading or "")}</h2>']
    if section.caution:
        out.append(f'<p class="caution"><b>Caution — {escape(section.caution)}.</b></p>')
    if section.intro:
        out.append(f'<p class="intro">{escape(section.intro)}</p>')
    if section.group is not None:
        slug = section.group.key.slug
        subs = [(_id(slug, t.key), t.title.split(" — ")[0]) for t in section.tables]
        if section.figures:
            subs.append((_id(slug, "plots"), "Plots"))
        out.append(_toc(subs, "In this section", "subtoc"))
    for item in section.items:
        table = _table(item.table, _prefix(section, item))
        if section.id == "recommendations" and item.group is not None:
            # the cost plot beside the answer it explains
            table = f'<div class="answer"><div>{table}</div>{_figure(pareto.get(item.group.key.slug))}</div>'
        out.append(table)
    if section.figures and section.group is not None:
        out += [f'<h3 id="{_id(section.group.key.slug, "plots")}">Plots — {escape(section.group.key.label)}</h3>',
                "\n".join(_figure(f) for f in section.figures)]
    return out


def html_page(page: Page, meta: dict[str, Any]) -> str:
    """The one HTML page: the ``page``'s sections in order, the run metadata last."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{escape(page.title)}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>{escape(page.title)}</h1>", f'<nav class="wide">{FILES}</nav>', "__TOC__"]
    lines = metadata_lines(meta)
    out += [f'<p class="caution"><b>{escape(label)}</b>: {escape(text)}</p>' for label, text in lines
            if label == "warnings"]  # warnings stay on top; the rest of the metadata goes last
    pareto = {s.group.key.slug: f for s in page.sections if s.group is not None for f in s.figures
              if f.kind == "pareto"}
    toc: list[tuple[str, str]] = []
    for section in page.shown(groups_inline=True):
        out += _section(section, pareto)
        toc.append((escape(section.id), section.heading or ""))
    out.append('<h2 id="metadata">Run metadata</h2><ul>')  # last: the answer is the first screen
    out += [f"<li><b>{escape(label)}</b>: {escape(text)}</li>" for label, text in lines if label != "warnings"]
    out.append("</ul>")
    toc.append(("metadata", "Run metadata"))
    # The contents twice: a wide screen's paragraph, and a phone's one folded line (CSS picks; the page has no script)
    phone = "".join(f'<a href="#{a}">{escape(t.split(" — ")[0] if " — " in t else t)}</a>' for a, t in toc)
    out[out.index("__TOC__")] = (_toc(toc).replace('<nav class="toc"', '<nav class="toc wide"', 1)
                                 + f'\n<details class="phone"><summary>Contents and files</summary><nav>{phone}'
                                 f"{FILES}</nav></details>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
