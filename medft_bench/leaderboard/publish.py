"""Publishing: read the records, aggregate, and write the Markdown pages, PNGs and ``summary.json``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft_bench.errors import MedftError
from medft_bench.io import atomic_write
from medft_bench.leaderboard import export, render_html, render_markdown, summary
from medft_bench.leaderboard.aggregate import Group, aggregate, tier_slug
from medft_bench.leaderboard.load import Inputs, Problem, load_inputs
from medft_bench.leaderboard.metadata import run_metadata
from medft_bench.leaderboard.plots import plot_group

SUMMARY = "summary.json"
OWN_SUFFIXES = (".md", ".png", ".json", ".csv", ".html")
PUBLISHED = "leaderboard"  # the repository's committed folder: written only when asked (--publish)


class NoRecordsError(MedftError):
    """No valid record at all: nothing to publish."""

    def __init__(self, sources: list[str], problems: list[Problem]) -> None:
        where = ", ".join(sources) or "(no inputs)"
        super().__init__(f"no valid result records in {where}" + (
            f" ({len(problems)} problem{'s' if len(problems) != 1 else ''} listed below)" if problems else ""))
        self.problems = problems


@dataclass
class Published:
    out: Path
    files: list[str]
    groups: list[Group]
    inputs: Inputs
    meta: dict[str, Any]


def _write(path: Path, text: str) -> None:
    atomic_write(path, text)


def _previous_files(out: Path) -> list[str]:
    try:
        files = json.loads((out / SUMMARY).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [f for f in files if isinstance(f, str)]


def default_out(sources: list[str | os.PathLike[str]], benchmark_jsons: list[str | os.PathLike[str]] = ()) -> Path:
    """Where the leaderboard goes unless told: ``leaderboard/`` inside the first results directory (a record
    file's or benchmark JSON's folder), so that a user's checkout stays clean."""
    first = Path((list(sources) or list(benchmark_jsons) or ["results"])[0])
    return (first if first.is_dir() or not first.suffix else first.parent) / "leaderboard"


def publish(sources: list[str | os.PathLike[str]], benchmark_jsons: list[str | os.PathLike[str]] = (),
            out: str | os.PathLike[str] | None = None, metric: str | None = None,
            all_metrics: bool = False) -> Published:
    """Aggregate every valid record under ``sources`` (and those ``benchmark_jsons`` point to) into ``out``.

    ``out`` defaults to :func:`default_out`. Raises :class:`NoRecordsError` when there is no valid record at
    all. The same records always give byte-identical files; files this function wrote on an earlier run and no
    longer writes are removed.
    """
    if out is None:
        out = default_out(sources, benchmark_jsons)
    inputs = load_inputs(list(sources), list(benchmark_jsons), exclude=out)
    if not inputs.runs:
        raise NoRecordsError(inputs.sources, inputs.problems)
    groups = aggregate(inputs.runs, metric)
    meta = run_metadata(inputs.runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_files(out)

    plots = {g.key.slug: plot_group(g, out, g.key.slug) for g in groups}
    pages: dict[str, str] = {}
    tiers: dict[str, list[Group]] = {}
    for g in groups:
        tiers.setdefault(g.key.tier, []).append(g)
    for tier, tier_groups in tiers.items():
        tier_runs = [r for g in tier_groups for r in g.runs]
        pages[f"{tier_slug(tier)}.md"] = render_markdown.tier_page(tier, tier_groups, run_metadata(tier_runs), metric,
                                                                   all_metrics, plots)
    pages[render_markdown.INDEX] = render_markdown.index_page(groups, inputs, meta, metric)
    pages[render_markdown.REFERENCES] = render_markdown.references_page()
    pages[render_html.HTML] = render_html.html_page(groups, inputs, meta, all_metrics, plots)
    pages[export.RECORDS_CSV] = export.records_csv(groups)
    pages[export.AGGREGATES_CSV] = export.aggregates_csv(groups)
    files = sorted([*pages, *(f for p in plots.values() for f in p.values()), SUMMARY])
    for name, text in sorted(pages.items()):
        _write(out / name, text)
    _write(out / SUMMARY, summary.dumps(summary.build_summary(groups, inputs, meta, metric, plots, files)))
    for stale in sorted(set(previous) - set(files)):
        if "/" not in stale and "\\" not in stale and stale.endswith(OWN_SUFFIXES) and not stale.startswith("."):
            (out / stale).unlink(missing_ok=True)
    return Published(out, files, groups, inputs, meta)
