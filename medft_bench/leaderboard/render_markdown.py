"""Markdown pages: an index (README.md), one page per tier, and the published reference numbers."""

from __future__ import annotations

import re
from typing import Any

from medft_bench.leaderboard import references
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.group_key import tier_slug
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.metadata import metadata_lines
from medft_bench.leaderboard.tables import group_tables
from medft_bench.leaderboard.tables.claims import claims_overview
from medft_bench.leaderboard.tables.model import Table
from medft_bench.leaderboard.tables.notes import notes_table, problems_table, reference_tables
from medft_bench.leaderboard.tables.recommendations import recommendation_tables
from medft_bench.leaderboard.tables.strategy import survival_tables
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
    return ("Results are ranked by each dataset's primary metric: **test AUC** for multi-label datasets "
            "(ChestMNIST: its ACC is ~0.95 for an all-negative predictor), **test balanced accuracy** for the "
            "rest. Every table names its metric.")


def _banner(group: Group) -> str:
    return f"> **Caution — {_esc(group.key.label)}.**\n" if group.key.caveat else ""


def index_page(groups: list[Group], inputs: Inputs, meta: dict[str, Any], metric: str | None) -> str:
    out = ["# medft-bench leaderboard", "",
           "Fine-tuning strategies for medical image classification, measured by this suite and aggregated by "
           "`python -m medft_bench.leaderboard` from the result records. How to read the tables and the "
           "statistical rules: `docs/leaderboard.md`.", "",
           _metric_line(metric), "",
           "Results of different tiers, image sizes, weights (pretrained, random, local file), protocols (the "
           "study's fixed learning rate, or each strategy tuned on validation) and of synthetic against real data "
           "are never averaged, ranked or compared together: each has its own tables.", "",
           "## Run metadata", "", _meta_md(meta)]
    recs = recommendation_tables(groups)
    if recs:
        out += ["## Which strategy for my modality and backbone?", "",
                "For each modality and backbone: the best strategy (selected on validation) with its test mean ± "
                "half the 95% CI, the runner-up, whether they differ significantly on test (paired over seeds), "
                "and the cheapest strategy non-inferior to the best within the stated margin, at what training "
                "cost. Each group (tier, data, weights, image size, protocol) is answered on its own.", ""]
        out += [table_md(t, level=3) for t in recs]
    out += ["## Tables", "", "| tier | image size | data | weights | protocol | ok | diverged | failed | datasets "
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
    out += ["", "## The study's claims, recomputed from these results", "",
            "Davila, Colan & Hasegawa (2024) claim that LP-FT beats FT in more than half of the cases, that "
            "Auto-RGN gains up to 11% for specific modalities, and that DenseNet-121 gains most from the "
            "alternatives to FT. Each group recomputes them from its own cells (details on its page); gains "
            "are in percentage points (pp) of the metric.", "", table_md(claims_overview(groups), level=3)]
    survive = survival_tables(groups)
    if survive:
        out += ["## Does it survive tuning?", "",
                "Each strategy's mean Δ against FT under the study's fixed learning rate next to its Δ when every "
                "strategy (FT included) runs at its own best learning rate on validation, on the same cases.", ""]
        out += [table_md(t, level=3) for t in survive]
    for extra in (problems_table(inputs), notes_table(inputs)):
        if extra is not None:
            out.append(table_md(extra, level=2))
    out += [f"## {references.TITLE}", "",
            f"Numbers from MedMNIST v2, MedMNIST+ and others, with their sources and protocols: "
            f"[{REFERENCES}]({REFERENCES}). They are not results of this suite and enter no table above.", ""]
    return "\n".join(out).rstrip() + "\n"


def tier_page(tier: str, groups: list[Group], meta: dict[str, Any], metric: str | None, all_metrics: bool,
              plots: dict[str, dict[str, str]]) -> str:
    out = [f"# Tier {_code(tier)}", "", f"[All tiers]({INDEX})", "", _metric_line(metric), "",
           "## Run metadata", "", _meta_md(meta)]
    for g in groups:
        out += [f"## {_esc(g.key.label)}", ""]
        banner = _banner(g)
        if banner:
            out += [banner]
        for t in group_tables(g, all_metrics):
            out.append(table_md(t, level=3))
        files = plots.get(g.key.slug, {})
        if files:
            out += [f"### Plots — {_esc(g.key.label)}", ""]
            if "delta" in files:
                out += [f"![Δ against FT — {_esc(g.key.label)}]({files['delta']})", "",
                        "Heatmap: Δ against FT in percentage points, strategies × cases (grey: no result).", ""]
            if "pareto" in files:
                out += [f"![Accuracy against training cost — {_esc(g.key.label)}]({files['pareto']})", "",
                        "Pareto view: mean test metric against mean training time per seed; the red line joins "
                        "strategies that no other strategy beats on both.", ""]
    for t in survival_tables(groups):
        out.append(table_md(t, level=2))
    datasets = {r.dataset for g in groups for r in g.rows}
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
