"""Markdown pages: an index (README.md), one page per tier, and the published reference numbers; each walks the
sections of :mod:`page`."""

from __future__ import annotations

import re
from typing import Any

from medft_bench.leaderboard import references
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.group_key import tier_slug
from medft_bench.leaderboard.metadata import metadata_lines
from medft_bench.leaderboard.page import Page, Section
from medft_bench.leaderboard.tables.model import Table
from medft_bench.leaderboard.tables.notes import reference_tables
from medft_bench.text import markdown_text
from medft_bench.vocabulary import METRIC_NAMES

INDEX = "README.md"
REFERENCES = "references.md"


def _esc(text: str) -> str:
    """Free text for a Markdown cell, caption or heading: no raw HTML, no control character, no cell break."""
    return markdown_text(text).replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    """A name as inline code when it is a plain name; else escaped text (a code span shows entities raw, and a
    backtick would end it)."""
    return f"`{text}`" if re.fullmatch(r"[\w.+-]*", text) else _esc(text)


def table_md(table: Table, level: int = 3) -> str:
    out = [f"{'#' * level} {_esc(table.title)}", ""]
    if table.caption:
        out += [f"*{_esc(table.caption)}*", ""]
    out.append("| " + " | ".join(_esc(h) for h in table.headers) + " |")
    out.append("| " + " | ".join("---:" if col.align == "r" else "---" for col in table.columns) + " |")
    for row in table.rows:
        cells = []
        for cell in row:
            text = _esc(cell.text)
            cells.append(f"**{text}**" if cell.style == "best" and text else text)
        out.append("| " + " | ".join(cells) + " |")
    if table.notes:
        out.append("")
        out += [f"- {_esc(n)}" for n in table.notes]
    return "\n".join(out) + "\n"


def _meta_md(meta: dict[str, Any]) -> str:
    return "\n".join(f"- **{label}**: {_esc(text)}" for label, text in metadata_lines(meta)) + "\n"


def _metric_line(metric: str | None) -> str:
    if metric:
        return (f"Every result is ranked by **test {METRIC_NAMES[metric]}** (chosen with `--metric {metric}`) "
                f"for every dataset.")
    return ("Results are ranked by **test AUC** (medmnist's, threshold-free) for every dataset; balanced "
            "accuracy at the argmax, which moves with where the decision threshold falls, is shown beside it, and "
            "the study's claims keep the study's macro (balanced) accuracy. Every table names its metric.")


def _section_md(section: Section) -> list[str]:
    """A section: its heading (level 2) and text, then its tables (level 3; level 2 without a heading)."""
    if section.heading is None:
        return [table_md(t, level=2) for t in section.tables]
    out = [f"## {_esc(section.heading)}", ""]
    if section.caution:
        out.append(f"> **Caution — {_esc(section.caution)}.**\n")
    if section.intro:
        out += [section.intro, ""]  # the page's own text, written to be Markdown: not escaped
    out += [table_md(t, level=3) for t in section.tables]
    if section.figures and section.group is not None:
        out += [f"### Plots — {_esc(section.group.key.label)}", ""]
        for f in section.figures:
            out += [f"![{_esc(f.title)}]({f.file})", "", f.caption, ""]
    return out


def _groups_md(groups: list[Group]) -> list[str]:
    """The index's list of the groups, each with its counts and a link to its tier's page."""
    out = ["## Tables", "", "| tier | image size | data | weights | protocol | ok | diverged | failed | datasets "
           "| backbones | strategies | page |",
           "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for g in groups:
        st = g.status_counts()
        data = "**SYNTHETIC**" if g.key.synthetic else "real"
        weights = {"random": "**RANDOM**", "file": "local file"}.get(g.key.weights, g.key.weights)
        protocol = "**tuned**" if g.key.protocol == "tuned" else _esc(g.key.protocol)
        out.append(f"| {_esc(g.key.tier)} | {g.key.img_size} | {data} | {weights} | {protocol} | {st['ok']} | "
                   f"{st['diverged']} | "
                   f"{st['failed']} | {len({r.dataset for r in g.rows})} | {len({r.backbone for r in g.rows})} | "
                   f"{len(g.strategies)} | [{tier_slug(g.key.tier)}.md]({tier_slug(g.key.tier)}.md) |")
    return [*out, ""]


def index_page(page: Page, meta: dict[str, Any], metric: str | None) -> str:
    """README.md: the leaderboard ``page``'s sections in order, its groups' sections as one list linking to
    their tier pages (:func:`tier_page`)."""
    out = [f"# {page.title}", "",
           "Fine-tuning strategies for medical image classification, measured by this suite and aggregated by "
           "`python -m medft_bench.leaderboard` from the result records. How to read the tables and the "
           "statistical rules: `docs/leaderboard.md`.", "",
           _metric_line(metric), "",
           "Results of different tiers, image sizes, weights (pretrained, random, local file), protocols (the "
           "study's fixed learning rate, or each strategy tuned on validation) and of synthetic against real data "
           "are never averaged, ranked or compared together: each has its own tables.", "",
           "## Run metadata", "", _meta_md(meta)]
    sections = page.shown(groups_inline=False)
    groups = [s.group for s in sections if s.group is not None]
    for i, section in enumerate(sections):
        if section.group is None:
            out += _section_md(section)
        elif all(s.group is None for s in sections[:i]):  # the groups' list where the first group stands
            out += _groups_md(groups)
    out += [f"## {references.TITLE}", "",
            f"Numbers from MedMNIST v2, MedMNIST+ and others, with their sources and protocols: "
            f"[{REFERENCES}]({REFERENCES}). They are not results of this suite and enter no table above.", ""]
    return "\n".join(out).rstrip() + "\n"


def tier_page(tier: str, page: Page, meta: dict[str, Any], metric: str | None) -> str:
    """A tier's page: its sections (:func:`page.tier_page`), then the published numbers for its datasets."""
    out = [f"# Tier {_code(tier)}", "", f"[All tiers]({INDEX})", "", _metric_line(metric), "",
           "## Run metadata", "", _meta_md(meta)]
    for section in page.sections:
        out += _section_md(section)
    datasets = {r.dataset for s in page.sections if s.group is not None for r in s.group.rows}
    refs = reference_tables(datasets)
    out += [f"## {references.TITLE}", "", f"*{references.load_references()['note']}*", ""]
    if refs:
        for t in refs:
            out.append(table_md(t, level=3))
    else:
        out += ["No published per-dataset numbers for these datasets.", ""]
    out += [f"All reference numbers: [{REFERENCES}]({REFERENCES}).", ""]
    return "\n".join(out).rstrip() + "\n"


def references_page() -> str:
    refs = references.load_references()
    out = [f"# {references.TITLE}", "", f"[All tiers]({INDEX})", "", f"*{refs['note']}*", ""]
    for t in reference_tables(None):
        out.append(table_md(t, level=2))
    return "\n".join(out).rstrip() + "\n"
