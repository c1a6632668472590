"""Publishing: read the records, aggregate, and write the Markdown pages, PNGs and ``summary.json``.

The ``--out`` folder changes as one unit: under a lock file (a second leaderboard on the same folder waits), every
file is written into a hidden staging folder inside it, then renamed into place with Ctrl-C and SIGTERM held
until the last rename, ``summary.json`` (the list of what it wrote) last. The renames and removals are listed
first in a journal (:func:`medft_bench.io.atomic_paths`): a leaderboard killed among them (SIGKILL, the OOM
killer, a power cut) leaves it, and the next run into the folder finishes that commit before anything else, so
the folder is never left half of one leaderboard and half of another. An interruption before the journal leaves
the folder as it was; the next run removes what it left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft_bench.errors import MedftError
from medft_bench.io import (
    atomic_paths,
    atomic_write,
    complete_commits,
    deferred_signals,
    pending_commits,
    read_regular,
)
from medft_bench.leaderboard import export, page, render_html, render_markdown, summary, views
from medft_bench.leaderboard.aggregate import Group, aggregate
from medft_bench.leaderboard.group_key import tier_slug
from medft_bench.leaderboard.load import Inputs, Problem, is_leaderboard_summary, load_inputs
from medft_bench.leaderboard.metadata import run_metadata
from medft_bench.leaderboard.plots import PLOT_KINDS, plot_group

SUMMARY = "summary.json"
OWN_SUFFIXES = (".md", ".png", ".json", ".csv", ".html")
PUBLISHED = "leaderboard"  # the repository's committed folder: written only when asked (--publish)
LOCK = ".leaderboard.lock"  # held while a leaderboard reads and changes the folder; removed when done
STAGING = ".leaderboard-staging."  # + the writer's pid: the new files before they are renamed into place


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


def _previous_files(out: Path) -> list[str] | None:
    """The files an earlier run of this leaderboard wrote into ``out`` (its own summary.json lists them); None
    when ``out`` holds no summary.json of this leaderboard's: then none of its files are ours to replace."""
    path = out / SUMMARY
    if not is_leaderboard_summary(path):
        return None
    files = json.loads(read_regular(path)).get("files", [])
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _planned_files(groups: list[Group]) -> list[str]:
    """Every name :func:`publish` may write for ``groups`` (both plots of every group, whether drawn or not)."""
    tiers = {tier_slug(g.key.tier) + ".md" for g in groups}
    plots = {f"{g.key.slug}-{kind}.png" for g in groups for kind in PLOT_KINDS}
    plots |= {f for g in groups for f in views.planned_files(g, g.key.slug)}
    return sorted({*tiers, *plots, render_markdown.INDEX, render_markdown.REFERENCES, render_html.HTML,
                   export.RECORDS_CSV, export.AGGREGATES_CSV, views.PER_CLASS_CSV})


def _check_ownership(out: Path, files: list[str], previous: list[str] | None) -> None:
    """Refuse, before writing anything, to replace a file in ``out`` that this leaderboard did not write."""
    foreign = sorted(f for f in files if (out / f).exists() and (previous is None or f not in previous))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise MedftError(f"--out {out} holds {shown}, which this leaderboard did not write (no summary.json of its "
                         "own lists it): nothing was written; choose a new or empty folder, or move those files")


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock file (a second leaderboard writing the same folder waits for it). The file is removed
    when done, so none is left behind; a waiter that then locked the removed file opens the new one instead."""
    path = out / LOCK
    while True:
        fh = open(path, "a+")  # held open (and locked) across the block
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if os.fstat(fh.fileno()).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fh.close()


def _remove_leftovers(out: Path, names: set[str]) -> None:
    """What an interrupted leaderboard left in ``out``: its staging folders, and the temporary files of its own
    files (``.NAME.PID.RANDOM.tmp``). Called under the lock, when no other leaderboard is writing."""
    for entry in out.glob(STAGING + "*"):
        if entry.is_dir() and entry.name[len(STAGING):].isdigit():
            shutil.rmtree(entry, ignore_errors=True)
    for entry in out.glob(".*.tmp"):
        if any(entry.name.startswith(f".{name}.") for name in names):
            entry.unlink(missing_ok=True)


def _rename_order(name: str) -> tuple[int, str]:
    """The pages others link to first, then the pages that link (the index, the HTML), ``summary.json`` last."""
    return (2 if name == SUMMARY else 1 if name in (render_markdown.INDEX, render_html.HTML) else 0, name)


def _commit(stage: Path, out: Path, files: list[str], stale: list[str]) -> None:
    """Rename every staged file into ``out``, ``summary.json`` last, then remove the stale ones, as one journaled
    unit (a SIGKILL among the renames is finished by the next run) and with Ctrl-C and SIGTERM held, so that the
    folder never shows part of one leaderboard beside part of another."""
    names = sorted(files, key=_rename_order)
    with deferred_signals(), atomic_paths([out / n for n in names], remove=[out / n for n in stale]) as tmps:
        for tmp, name in zip(tmps, names):
            os.replace(stage / name, tmp)  # already complete and flushed (atomic_write) in the staging folder


def default_out(sources: list[str | os.PathLike[str]], benchmark_jsons: list[str | os.PathLike[str]] = ()) -> Path:
    """Where the leaderboard goes unless told: ``leaderboard/`` inside the first results directory (a record
    file's or benchmark JSON's folder), so that a user's checkout stays clean."""
    first = Path((list(sources) or list(benchmark_jsons) or ["results"])[0])
    return (first if first.is_dir() or not first.suffix else first.parent) / "leaderboard"


def _stage(stage: Path, groups: list[Group], inputs: Inputs, meta: dict[str, Any], metric: str | None,
           all_metrics: bool) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Write every file of the leaderboard into ``stage``; the names written, and the plots by group."""
    plots = {g.key.slug: {**plot_group(g, stage, g.key.slug), **views.write_views(g, stage, g.key.slug)}
             for g in groups}
    board = page.leaderboard_page(groups, inputs, all_metrics, plots)  # the one structure every page walks
    pages: dict[str, str] = {}
    for tier in dict.fromkeys(g.key.tier for g in groups):
        tier_runs = [r for g in groups if g.key.tier == tier for r in g.runs]
        pages[f"{tier_slug(tier)}.md"] = render_markdown.tier_page(tier, page.tier_page(board, tier),
                                                                   run_metadata(tier_runs), metric)
    pages[render_markdown.INDEX] = render_markdown.index_page(board, meta, metric)
    pages[render_markdown.REFERENCES] = render_markdown.references_page()
    pages[render_html.HTML] = render_html.html_page(board, meta)
    pages[export.RECORDS_CSV] = export.records_csv(groups)
    pages[export.AGGREGATES_CSV] = export.aggregates_csv(groups)
    pages[views.PER_CLASS_CSV] = views.per_class_csv(groups)
    files = sorted([*pages, *(f for p in plots.values() for f in p.values()), SUMMARY])
    for name, text in sorted(pages.items()):
        _write(stage / name, text)
    _write(stage / SUMMARY, summary.dumps(summary.build_summary(groups, inputs, meta, metric, plots, files)))
    return files, plots


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
    inputs = load_inputs(list(sources), list(benchmark_jsons))
    if not inputs.runs:
        raise NoRecordsError(inputs.sources, inputs.problems)
    groups = aggregate(inputs.runs, metric)
    meta = run_metadata(inputs.runs)
    out = Path(out)
    planned = [*_planned_files(groups), SUMMARY]
    if not (out.is_dir() and pending_commits(out)):  # a killed commit is finished under the lock, then checked
        _check_ownership(out, planned, _previous_files(out) if out.is_dir() else [])  # before creating anything
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        # A leaderboard killed while renaming its files into place (the lock was free: it is gone) is finished
        # first: then the folder is one leaderboard's again, and its summary.json says which files are ours.
        complete_commits(out, force=True)
        previous = _previous_files(out)  # again under the lock: another leaderboard may have written meanwhile
        _check_ownership(out, planned, previous)
        _remove_leftovers(out, {*planned, *(previous or ())})
        stage = out / f"{STAGING}{os.getpid()}"
        stage.mkdir()
        try:
            files, plots = _stage(stage, groups, inputs, meta, metric, all_metrics)
            stale = [f for f in sorted(set(previous or ()) - set(files))
                     if "/" not in f and "\\" not in f and f.endswith(OWN_SUFFIXES) and not f.startswith(".")]
            _commit(stage, out, files, stale)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    return Published(out, files, groups, inputs, meta)
