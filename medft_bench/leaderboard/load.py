"""The leaderboard's inputs: result directories or record files, and pytest-benchmark JSON files.

Every record goes through :func:`medft_bench.results.store.load_records` (schema validation); a file that
fails is kept as a :class:`Problem` with its reason, never dropped silently. Records of the same cell
(same ``config_hash``) count once; the choice is deterministic (see :func:`_pick`).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medft_bench.results.store import is_record_file, load_records

WEIGHTS_KINDS = ("pretrained", "packaged", "random", "file")
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


def is_unofficial_copy(data: dict[str, Any]) -> bool:
    """A record's ``data``: a MedMNIST file whose MD5 was checked and is not the official one (records written
    before the check, without ``md5_verified``, count as official)."""
    return data.get("source") == "medmnist" and not data.get("synthetic") and data.get("md5_verified") is False


@dataclass
class Run:
    """One valid record, with the fields the leaderboard uses pulled out."""

    path: str
    record: dict[str, Any] = field(repr=False)

    @property
    def cell(self) -> dict[str, Any]:
        return self.record["cell"]

    @property
    def tier(self) -> str:
        return str(self.cell["tier"])

    @property
    def dataset(self) -> str:
        return str(self.cell["dataset"])

    @property
    def img_size(self) -> int:
        return int(self.cell["img_size"])

    @property
    def input_size(self) -> int:
        """The size the backbone was shown the images at when one was asked for (--input-size), else 0."""
        return int((self.record["config"].get("train") or {}).get("input_size") or 0)

    @property
    def backbone(self) -> str:
        return str(self.cell["backbone"])

    @property
    def variant(self) -> str:
        """The parameters that make this strategy's row one of its own (``strategy.variant``: surgical's block), or
        ""."""
        variant = self.record.get("strategy", {}).get("variant")
        return str(variant) if isinstance(variant, str) else ""

    @property
    def strategy(self) -> str:
        """The row's strategy key: the name, with the variant when there is one (``surgical[block=2]``)."""
        name = str(self.cell["strategy"])
        return f"{name}[{self.variant}]" if self.variant else name

    @property
    def label(self) -> str | None:
        """The label the strategy declared (``strategy.label``), with the variant; None in records written before
        labels."""
        label = self.record.get("strategy", {}).get("label")
        if not label:
            return f"{self.cell['strategy']} ({self.variant})" if self.variant else None
        return f"{label} ({self.variant})" if self.variant else str(label)

    @property
    def seed(self) -> int:
        return int(self.cell["seed"])

    @property
    def cell_id(self) -> str:
        return str(self.record["cell_id"])

    @property
    def protocol(self) -> str:
        """study (records written before protocols existed too) or tuned."""
        return str(self.cell.get("protocol", "study"))

    @property
    def chosen_lr(self) -> float | None:
        """The tuned protocol's chosen learning rate; None for a study cell or one without a sweep."""
        tuning = self.record.get("tuning") or {}
        lr = tuning.get("chosen_lr")
        return float(lr) if isinstance(lr, (int, float)) else None

    @property
    def config_hash(self) -> str:
        return str(self.record["config_hash"])

    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    @property
    def synthetic(self) -> bool:
        """Synthetic when either the configuration or the data says so."""
        return bool(self.record["config"].get("synthetic")) or bool(self.record["data"].get("synthetic"))

    @property
    def unofficial(self) -> bool:
        """A MedMNIST dataset read from a file whose MD5 is not the official one (a copy someone changed, or another
        release): real images, but not the dataset the published numbers are about. Records written before the
        check (no ``md5_verified``) count as they were."""
        return not self.synthetic and is_unofficial_copy(self.record["data"])

    @property
    def weights_kind(self) -> str:
        """pretrained | packaged | random | file (a local weights file or directory)."""
        w = self.record["config"].get("weights")
        if isinstance(w, str) and w:
            return w if w in ("pretrained", "packaged", "random") else "file"
        source = self.record["weights"].get("source")
        return {"hub": "pretrained", "package": "packaged", "random": "random"}.get(source, "file")

    @property
    def task(self) -> str:
        return str(self.record["data"]["task"])

    @property
    def modality(self) -> str:
        mod = self.record["data"].get("modality")
        if mod:
            return str(mod)
        try:  # records written before data.modality existed
            from medft_bench.data.medmnist import MODALITY

            return MODALITY.get(self.dataset, "unknown")
        except ImportError:  # pragma: no cover
            return "unknown"

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.record.get("metrics")

    @property
    def costs(self) -> dict[str, Any]:
        return self.record["costs"]

    @property
    def stage_order(self) -> list[str]:
        """The stages in the order they ran: first appearance in ``epochs`` (a list, written in order). A JSON
        object's key order says nothing (records are written with sorted keys)."""
        order: list[str] = []
        for entry in self.record.get("epochs") or []:
            stage = entry.get("stage") if isinstance(entry, dict) else None
            if isinstance(stage, str) and stage not in order:
                order.append(stage)
        return order

    def last_stage_value(self, per_stage: dict[str, Any] | None) -> Any:
        """The value of the last stage that ran among ``per_stage``'s keys (stage order from ``epochs``); None
        when the order is unknown (several stages, none in ``epochs``), never the alphabetically last key."""
        if not per_stage:
            return None
        ranked = [s for s in self.stage_order if s in per_stage]
        if ranked:
            return per_stage[ranked[-1]]
        return next(iter(per_stage.values())) if len(per_stage) == 1 else None

    @property
    def drift(self) -> float | None:
        """||theta - theta0|| / ||theta0|| of the backbone at the end (the last stage's, in the order the stages
        ran); None in older records or when the stage order cannot be told."""
        value = self.last_stage_value(self.record.get("drift"))
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def probe_converged(self) -> bool | None:
        """The linear probe's solve (an ``epochs`` entry with ``epochs: 0`` and a ``converged`` field): False when
        any solve says it did not converge, True when all say so, None without a solve (or a reused head)."""
        flags = [e["converged"] for e in self.record.get("epochs") or []
                 if isinstance(e, dict) and e.get("epochs") == 0 and isinstance(e.get("converged"), bool)]
        return None if not flags else all(flags)

    @property
    def head_only_epochs(self) -> int:
        """Epochs in which an adaptive strategy (Auto-SNR) let no backbone tensor train: the epoch was a probe of
        the head alone (``adaptive_backbone_tensors`` 0 in the epoch's entry)."""
        return sum(1 for e in self.record.get("epochs") or []
                   if isinstance(e, dict) and e.get("adaptive_backbone_tensors") == 0)

    @property
    def environment(self) -> dict[str, Any]:
        return self.record["environment"]

    @property
    def code(self) -> dict[str, Any]:
        return self.record["code"]

    @property
    def started(self) -> str:
        return str(self.record["started"])

    @property
    def finished(self) -> str:
        return str(self.record["finished"])

    @property
    def finished_ts(self) -> float:
        return timestamp(self.finished)

    @property
    def started_ts(self) -> float:
        return timestamp(self.started)


def timestamp(text: str) -> float:
    """Seconds since the epoch for an ISO 8601 time (naive times are taken as UTC; unparsable: -inf)."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return float("-inf")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


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
        doc = json.loads(path.read_text())
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
        runs += [Run(str(file), rec) for rec in records]

    notes: list[Note] = []
    by_hash: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_hash[run.config_hash].append(run)
    unique: list[Run] = []
    for _, same in sorted(by_hash.items()):
        kept = _pick(same)
        unique.append(kept)
        notes += [Note("duplicate", r.path, kept.path, r.cell_id) for r in same if r is not kept]

    # One record per cell and kind of run: a later configuration of the same cell supersedes an older one.
    by_cell: dict[tuple[Any, ...], list[Run]] = defaultdict(list)
    for run in unique:
        # (an unofficial copy of a file never supersedes, nor is superseded by, the official file's record)
        by_cell[(run.tier, run.synthetic, run.unofficial, run.weights_kind, run.img_size, run.input_size,
                 run.protocol, run.dataset, run.backbone, run.strategy, run.seed)].append(run)
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
        doc = json.loads(path.read_bytes())
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
