"""The study's claims as tables: per group, and one overview row per group."""

from __future__ import annotations

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.claims import METHOD, NOT_ENOUGH, SOURCE
from medft_bench.leaderboard.tables.format import title
from medft_bench.leaderboard.tables.model import Table, cell, left
from medft_bench.vocabulary import CLAIMS_METRIC, METRIC_NAMES, RANKING_METRIC


def _method_note(text: str) -> str:
    """'1: ...' -> 'Claim 1: ...'; a note about several claims names them itself."""
    return f"Claim {text}" if text[:1].isdigit() else text


CLAIMS_CAPTION = (f"test {METRIC_NAMES[CLAIMS_METRIC]}: the study's metric (its macro accuracy), not the "
                  f"leaderboard's ranking metric ({METRIC_NAMES[RANKING_METRIC]})")


def _claim_style(verdict: str) -> str:
    if verdict.startswith("consistent"):
        return "pos"
    return "neg" if verdict.startswith("not consistent") else "warn"


def claims_table(group: Group) -> Table:
    rows = [[cell(cl.statement), cell(cl.study), cell(cl.ours), cell(cl.verdict, _claim_style(cl.verdict)),
             cell(cl.verdict_without_failures, _claim_style(cl.verdict_without_failures))]
            for cl in group.claims]
    return Table("claims", title(group, "The study's claims, recomputed"),
                 [left("claim", key=True, wrap=48), left("study", wrap=32), left("ours", wrap=56),
                  left("verdict (failures counted)", wrap=56), left("verdict without failures", wrap=48)], rows,
                 caption=CLAIMS_CAPTION,
                 notes=["Study: " + SOURCE + "; comparisons of means over seeds within this group only.",
                        *(_method_note(m) for m in METHOD)])


def claims_overview(groups: list[Group]) -> Table:
    """One row per group: ours for each claim, next to the study's figure (in the headers)."""
    rows = []
    for g in groups:
        cells = [cell(g.key.label)]
        for cl in g.claims:
            text = cl.verdict if cl.verdict.startswith(NOT_ENOUGH) else f"{cl.short}: {cl.verdict}"
            cells.append(cell(text, _claim_style(cl.verdict)))
        rows.append(cells)
    return Table("claims-overview", "The study's claims, recomputed per group",
                 [left("group", key=True, wrap=48), left("LP-FT beats FT (study: > 50% of cases)", wrap=48),
                  left("Auto-RGN gain over FT by modality (study: up to 11%)", wrap=48),
                  left("alternatives' gain by backbone (study: DenseNet-121 gains most)", wrap=48)],
                 rows, caption=CLAIMS_CAPTION, notes=[_method_note(m) for m in METHOD])
