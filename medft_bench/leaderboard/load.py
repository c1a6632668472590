"""The leaderboard's inputs: result directories or record files, and pytest-benchmark JSON files.

Every record goes through :func:`medft_bench.results.store.load_records` (schema validation); a file that
fails is kept as a :class:`Problem` with its reason, never dropped silently. Records of the same cell
(same ``config_hash``) count once; the choice is deterministic (see :func:`_pick`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from medft_bench.io import read_regular
from medft_bench.leaderboard.stats import group_by
from medft_bench.results.store import is_record_file, load_records
from medft_bench.results.view import RecordView

SUMMARY_SCHEMA = "medft-bench/leaderboard-summary/1"  # the leaderboard's own summary.json: never a record
STATUS_ORDER = {"ok": 0, "diverged": 1, "failed": 2}


@dataclass(frozen=True, order=True)
class Problem:
    """A file (or benchmark entry) that could not be used, and why."""

    path: str
    reason: str


@dataclass(frozen=True, order=True)
class Note:
    """A record that was read but not counted (duplicate or superseded), and the one that was kept."""

    kind: str  # "duplicate" (same config_hash) | "superseded" (same cell, another configuration)
    dropped: str
    kept: str
    cell_id: str


@dataclass
class Run(RecordView):
    """One valid record (:class:`medft_bench.results.view.RecordView`) and the file it was read from."""

    path: str = ""


@dataclass
class Inputs:
    """What the leaderboard read: the runs it counts, and everything it did not count, with reasons."""

    runs: list[Run]
    problems: list[Problem]
    notes: list[Note]
    sources: list[str]  # the roots and benchmark files, as given


def benchmark_record_paths(path: str | os.PathLike[str]) -> tuple[list[Path], list[Problem]]:
    """The record files a pytest-benchmark JSON points to (``benchmarks[*].extra_info["record_path"]``).

    A relative ``record_path`` is tried as given (relative to the working directory), then relative to the
    JSON file's folder. Missing paths and entries without one are problems, not errors.
    """
    path = Path(path)
    try:
        doc = json.loads(read_regular(path).decode("utf-8"))  # a FIFO is refused, never waited on
    except OSError as exc:
        return [], [Problem(str(path), f"cannot read benchmark JSON ({exc.strerror or exc})")]
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return [], [Problem(str(path), f"benchmark file is not valid JSON ({exc})")]
    except RecursionError:
        return [], [Problem(str(path), "benchmark file is not valid JSON (nested too deeply to read)")]
    benchmarks = doc.get("benchmarks") if isinstance(doc, dict) else None
    if not isinstance(benchmarks, list):
        return [], [Problem(str(path), "not a pytest-benchmark JSON file (no 'benchmarks' list)")]
    found: list[Path] = []
    problems: list[Problem] = []
    for i, bench in enumerate(benchmarks):
        name = bench.get("fullname") or bench.get("name") or f"benchmarks[{i}]" if isinstance(bench, dict) else ""
        extra = bench.get("extra_info") if isinstance(bench, dict) else None
        rp = extra.get("record_path") if isinstance(extra, dict) else None
        if not isinstance(rp, str) or not rp:
            problems.append(Problem(str(path), f"benchmark {name}: no extra_info['record_path']"))
            continue
        candidates = [Path(rp)] if Path(rp).is_absolute() else [Path(rp), path.parent / rp]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            problems.append(Problem(str(path), f"benchmark {name}: record_path {rp} not found"))
        else:
            found.append(hit)
    return found, problems


def _pick(runs: list[Run]) -> Run:
    """The record that counts among several: ok before diverged before failed, then the latest finished,
    then the path (so that the choice never depends on the order files were found in)."""
    return min(runs, key=lambda r: (STATUS_ORDER.get(r.status, 9), -r.finished_ts, r.path))


def load_inputs(roots: list[str | os.PathLike[str]], benchmark_jsons: list[str | os.PathLike[str]] = ()) -> Inputs:
    """Read every record under ``roots`` and those named by ``benchmark_jsons``; deduplicate. A leaderboard's
    own ``summary.json`` is not a record and is passed over; records inside a leaderboard's folder are read."""
    problems: list[Problem] = []
    files: list[Path] = []
    for bj in benchmark_jsons:
        paths, probs = benchmark_record_paths(bj)
        files += paths
        problems += probs
    runs: list[Run] = []
    seen_files: set[str] = set()
    for file in _expand([*roots, *files], problems):
        real = os.path.realpath(file)
        if real in seen_files:  # the same file reached twice (a root and a benchmark entry)
            continue
        seen_files.add(real)
        records, load_problems = load_records([file])
        problems += [Problem(str(p.path), _strip_path(p.reason, str(p.path))) for p in load_problems]
        runs += [Run(rec, str(file)) for rec in records]

    notes: list[Note] = []
    by_hash = group_by(runs, lambda run: run.config_hash)
    unique: list[Run] = []
    for _, same in sorted(by_hash.items()):
        kept = _pick(same)
        unique.append(kept)
        notes += [Note("duplicate", r.path, kept.path, r.cell_id) for r in same if r is not kept]

    # One record per cell and kind of run: a later configuration of the same cell supersedes an older one.
    # (an unofficial copy of a file never supersedes, nor is superseded by, the official file's record)
    by_cell = group_by(unique, lambda run: (run.tier, run.synthetic, run.unofficial, run.weights_kind, run.img_size,
                                            run.input_size, run.protocol, run.dataset, run.backbone, run.strategy,
                                            run.seed))
    counted: list[Run] = []
    for _, same in sorted(by_cell.items(), key=lambda kv: repr(kv[0])):
        kept = min(same, key=lambda r: (-r.finished_ts, STATUS_ORDER.get(r.status, 9), r.path))
        counted.append(kept)
        notes += [Note("superseded", r.path, kept.path, r.cell_id) for r in same if r is not kept]
    counted.sort(key=lambda r: (r.tier, r.dataset, r.img_size, r.backbone, r.strategy, r.protocol, r.seed, r.path))
    return Inputs(counted, sorted(set(problems)), sorted(notes), [str(s) for s in [*roots, *benchmark_jsons]])


def _strip_path(reason: str, path: str) -> str:
    """The reason without the file name the store's message starts with (it is listed next to it)."""
    return reason[len(path):].lstrip(": ") or reason if reason.startswith(path) else reason


def is_leaderboard_summary(path: Path) -> bool:
    """A leaderboard's summary.json (e.g. results/leaderboard/, the default output, found in a later run)."""
    if path.name != "summary.json":
        return False
    try:
        doc = json.loads(read_regular(path))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and doc.get("schema") == SUMMARY_SCHEMA


def _expand(roots: list[str | os.PathLike[str]], problems: list[Problem]) -> list[Path]:
    """Record files under ``roots`` (files, or directories searched recursively for ``*.json``)."""
    files: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*.json") if is_record_file(p) and p.is_file()
                            and not is_leaderboard_summary(p))
        else:
            problems.append(Problem(str(root), "no such file or directory"))
    return files
