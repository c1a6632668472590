"""The results store: one JSON record per cell, keyed by the cell's config hash; the one writer.

Writes are atomic (:mod:`medft_bench.io`: a temporary file in the same directory, then a rename), so an interrupted run
never leaves a partial record, and two processes writing the same directory never corrupt one. A record and its
head, predictions and network are one unit, renamed under a journal that the next claim of the cell finishes if
the writer was killed among the renames. A file this code cannot read as a record (a newer checkout's, damaged)
is never replaced or deleted: its cell is blocked (:class:`~medft_bench.errors.RecordBlockedError`). A per-cell
lock lets concurrent runs (pytest-xdist workers, two shells) compute each cell once. File names are made
from the cell's id with anything but letters, digits and ``._+=-`` replaced, so a backbone named
``hf-hub:org/model`` or ``x/../../escaped`` never creates a file outside the results directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from medft_bench.config import CellConfig
from medft_bench.errors import NewerRecordError, RecordBlockedError, RecordError, ResultsWriteError, write_cause
from medft_bench.io import (
    NotRegularFileError,
    atomic_paths,
    atomic_write,
    complete_commits,
    is_regular,
    pending_commits,
    read_regular,
)
from medft_bench.results.identity import earlier_hashes
from medft_bench.results.predictions import folder_for as prediction_folder
from medft_bench.results.record import SCHEMA_VERSION, validate
from medft_bench.results.upgrade import upgrade

if TYPE_CHECKING:  # torch is imported where used: reading records (the leaderboard) needs no torch
    import torch

REUSABLE = ("ok", "diverged")  # a failed cell is computed again on the next run
TRIAL_SUFFIX = ".trial.json"  # a tuned cell's trials: not records, never read as results
# A recomputed cell (--rerun) whose new attempt is not ok, beside the ok record it must not replace: not a record
ATTEMPT_SUFFIX = ".attempt.json"


def is_record_file(path: Path) -> bool:
    """A record's file name: ``*.json``, neither a temporary (dot) file nor a tuned cell's trial file."""
    return (path.suffix == ".json" and not path.name.startswith(".")
            and not path.name.endswith((TRIAL_SUFFIX, ATTEMPT_SUFFIX)))


@dataclass
class LoadProblem:
    path: Path
    reason: str


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")
MAX_STEM = 160  # with the hash, the suffix and a temporary file's decoration: well under 255 bytes


def safe_name(text: str) -> str:
    """``text`` as one file-name component: characters outside letters, digits and ``._+=-`` become ``_``,
    a leading dot too (dot files are temporary files here)."""
    out = _UNSAFE.sub("_", text)[:MAX_STEM]
    return "_" + out[1:] if out.startswith(".") or not out else out


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}: JSON has no NaN or Infinity (a metric is a number or null)")


# A JSON file nested deeper than Python's recursion limit (a hostile or broken file under a results tree): one
# problem of that file, never a RecursionError that stops the leaderboard, ``compare`` or ``list tiers``.
TOO_DEEP = "not a record (its JSON is nested too deeply to read)"


def read_record(path: Path) -> dict[str, Any]:
    """Read one record, upgraded to the current layout (:mod:`medft_bench.results.upgrade`) and validated;
    :class:`RecordError` names the file and the problem."""
    try:
        record = json.loads(read_regular(path).decode("utf-8"), parse_constant=_no_constant)
    except NotRegularFileError:  # a FIFO would block the reader for ever
        raise RecordError(f"{path}: not a record (not a regular file: a FIFO, socket or device)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # from _no_constant
        raise RecordError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise RecordError(f"{path}: {TOO_DEEP}") from None
    version = record.get("schema_version") if isinstance(record, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        raise NewerRecordError(f"{path}: written by a newer medft-bench (record schema v{version}; this one reads "
                               f"up to v{SCHEMA_VERSION})")
    try:
        record = upgrade(record)
        validate(record, str(path))
    except RecursionError:  # nested just shallow enough for the parser, too deep for the schema's validator
        raise RecordError(f"{path}: {TOO_DEEP}") from None
    return record


@dataclass(frozen=True)
class ReusedHead:
    """A trained head another cell starts from (LP-FT's and Auto-SNR's probe): its weights, on the CPU, and what it
    cost to train (``train_s`` of the record it was saved with). All a strategy knows of that record."""

    state: dict[str, torch.Tensor]
    train_s: float
    config_hash: str


def reused_head(store: Store | None, cfg: CellConfig) -> ReusedHead | None:
    """The head saved with ``cfg``'s ok record in ``store``, or None (no store, no record, no head file)."""
    record = store.lookup(cfg) if store is not None else None
    head = store.load_head(cfg) if record is not None and record["status"] == "ok" else None
    if head is None:
        return None
    return ReusedHead(head, float(record["costs"]["train_s"]), str(record["config_hash"]))


class Store(Protocol):
    """What a cell's run needs of a store: the records it reuses (LP-FT's probe) and their heads, a tuned cell's
    kept trials, a lock, and where its own record goes. :class:`ResultStore` is the results directory; a cluster
    worker's :class:`medft_bench.cluster.worker.ShippedStore` serves what the driver shipped and writes nothing."""

    def lookup(self, cfg: CellConfig) -> dict[str, Any] | None: ...

    def load_head(self, cfg: CellConfig) -> dict[str, torch.Tensor] | None: ...

    def read_trial(self, cfg: CellConfig, trial_hash: str) -> dict[str, Any] | None: ...

    def write_trial(self, cfg: CellConfig, trial: dict[str, Any]) -> Path | None: ...

    def write(self, record: dict[str, Any], cfg: CellConfig, head_state: dict[str, torch.Tensor] | None = None,
              predictions: dict[str, str] | None = None,
              model_state: dict[str, torch.Tensor] | None = None) -> Path | None: ...

    def path_for(self, cfg: CellConfig) -> Path | None: ...

    def record_path(self, cfg: CellConfig) -> Path | None: ...

    def claim(self, cfg: CellConfig, trial_hash: str | None = None) -> contextlib.AbstractContextManager[None]: ...


class ResultStore:
    """The results directory: one record per cell, written atomically, a lock per cell and per trial."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def stem_for(self, cfg: CellConfig) -> str:
        """The cell's file name without suffix: its id made safe (:func:`safe_name`), then its config hash,
        which keeps names unique when two ids differ only in replaced characters."""
        return f"{safe_name(cfg.cell_id)}__{cfg.config_hash}"

    def path_for(self, cfg: CellConfig) -> Path:
        """Where the cell's record is written: under its current hash."""
        return self.root / safe_name(cfg.tier) / f"{self.stem_for(cfg)}.json"

    def places(self, cfg: CellConfig) -> list[tuple[Path, str]]:
        """Where a record of the cell may be, with the hash it holds there: under its current hash (where it is
        written), then under the hashes of earlier identity versions (:mod:`medft_bench.results.identity`), where
        a record written before the identity changed stays, found and reused but never rewritten."""
        path = self.path_for(cfg)
        return [(path, cfg.config_hash), *((path.with_name(f"{safe_name(cfg.cell_id)}__{h}.json"), h)
                                           for h in earlier_hashes(cfg).values())]

    def _found(self, cfg: CellConfig) -> tuple[Path, str]:
        """The place of the cell's stored record: the first of :meth:`places` that holds a file (the current one
        when none does)."""
        places = self.places(cfg)
        return next((p for p in places if os.path.lexists(p[0])), places[0])

    def record_path(self, cfg: CellConfig) -> Path:
        """The file of the cell's stored record (an earlier identity version's, when that is where it is), or where
        it will be written."""
        return self._found(cfg)[0]

    def head_path_for(self, cfg: CellConfig) -> Path:
        return self.path_for(cfg).with_suffix(".head.pt")

    def _record_at(self, cfg: CellConfig, computed: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The record in the cell's place (:meth:`_found`), None when there is none; see :meth:`_existing`."""
        return self._existing(self._found(cfg)[0], cfg.cell_id, computed)

    def model_path_for(self, cfg: CellConfig) -> Path:
        """The fine-tuned network's state dict, kept with an ok record under ``--save-model``."""
        return self.path_for(cfg).with_suffix(".model.pt")

    def attempt_path_for(self, cfg: CellConfig) -> Path:
        """Where a recomputed cell's attempt that is not ok goes when an ok record is in the way."""
        path = self.path_for(cfg)
        return path.with_name(path.stem + ATTEMPT_SUFFIX)

    @staticmethod
    def _existing(path: Path, cell_id: str, computed: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The record at a cell's ``path``, None when there is none; :class:`RecordBlockedError` when a file there
        cannot be read as a record: it may be a newer checkout's result, and no data is ever replaced unread."""
        if not os.path.lexists(path):
            return None
        try:
            return read_record(path)
        except RecordError as exc:
            reason = str(exc).removeprefix(str(path)).lstrip(": ")  # the path is named once, first
            todo = ("update medft-bench to read it, or move it out of the results directory to compute the cell "
                    "again" if isinstance(exc, NewerRecordError) else
                    "repair it (a newer medft-bench's record: update this one), or move it out of the results "
                    "directory to compute the cell again")
            raise RecordBlockedError(f"{path} blocks {cell_id}: {reason}. It was left as it is, and the cell was "
                                     f"{'computed but not stored' if computed else 'not run'}: {todo}",
                                     record=computed) from None

    def trial_path(self, cfg: CellConfig, trial_hash: str) -> Path:
        """Where one trial of a tuned cell is kept: in a folder next to the cell's record, by trial hash."""
        return self.path_for(cfg).with_suffix(".trials") / f"{trial_hash}{TRIAL_SUFFIX}"

    def read_trial(self, cfg: CellConfig, trial_hash: str) -> dict[str, Any] | None:
        """A finished trial (ok or diverged) of this exact configuration, or None (absent, broken, failed)."""
        path = self.trial_path(cfg, trial_hash)
        try:
            trial = json.loads(read_regular(path).decode("utf-8"), parse_constant=_no_constant)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        if not isinstance(trial, dict) or trial.get("trial_hash") != trial_hash or trial.get("status") not in REUSABLE:
            return None
        return trial

    def write_trial(self, cfg: CellConfig, trial: dict[str, Any]) -> Path:
        """Keep a finished trial atomically, so that an interrupted tuning resumes after it."""
        path = self.trial_path(cfg, trial["trial_hash"])
        try:
            atomic_write(path, json.dumps(trial, indent=1, sort_keys=True, allow_nan=False) + "\n")
        except OSError as exc:
            raise ResultsWriteError(f"cannot write the trial {path} ({exc.strerror or exc}); choose a writable "
                                    "--results-dir") from None
        return path

    def lookup(self, cfg: CellConfig) -> dict[str, Any] | None:
        """The stored record for exactly this configuration, when it is valid and reusable;
        :class:`RecordBlockedError` when a file this code cannot read holds its place (never replaced).

        A record whose write was interrupted between its files' renames (its journal is there) is not served:
        its head or predictions may be newer than it until :meth:`claim` completes it.

        The record is the one under the cell's current hash, else one written under an earlier identity version's
        hash (:meth:`places`): the first file found decides."""
        path, config_hash = self._found(cfg)
        if pending_commits(path.parent, path.name):
            return None
        record = self._existing(path, cfg.cell_id)
        if record is None:
            return None
        if record["config_hash"] != config_hash or record["status"] not in REUSABLE:
            return None
        return record

    def load_head(self, cfg: CellConfig) -> dict[str, torch.Tensor] | None:
        """The trained head saved with a cell's record, or None. Only an ok record is written with one, and a
        record that is not ok never replaces an ok one (:meth:`write`), so the caller, who has looked the record
        up already, is not made to read it a second time."""
        path = self.record_path(cfg).with_suffix(".head.pt")
        if not path.is_file():
            return None
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None

    def write(self, record: dict[str, Any], cfg: CellConfig, head_state: dict[str, torch.Tensor] | None = None,
              predictions: dict[str, str] | None = None,
              model_state: dict[str, torch.Tensor] | None = None) -> Path:
        """Store ``record`` (with the trained head, the per-image predictions' files, by name, and the network when
        given) atomically; :class:`ResultsWriteError` when it cannot be. A record written without a network
        removes an earlier computation's, which is not this record's model.

        Every file is written to a temporary file first and renamed into place only when all are complete:
        a full disk leaves none, never a record without the files it lists.
        """
        validate(record, cfg.cell_id)
        path = self.path_for(cfg)
        complete_commits(path.parent, path.name)  # a killed writer's unit of this cell is finished, then judged
        # The cell's stored record, an earlier identity version's included: a result never replaced by a worse one
        existing = self._record_at(cfg, record)
        if record["status"] != "ok" and existing is not None and existing["status"] == "ok":
            # Never replace an ok result by a worse one (a --rerun that failed): the attempt goes beside it.
            path, head_state, predictions, model_state = self.attempt_path_for(cfg), None, None, None
        predictions = predictions or {}
        pred_dir = prediction_folder(path)
        # Part of the unit: an earlier computation's predictions (names carry the metrics) no longer listed, and
        # its network when this record has none (not this record's model).
        stale = sorted(p for p in pred_dir.glob("*.csv") if p.name not in predictions) if pred_dir.is_dir() else []
        if model_state is None and path == self.path_for(cfg):
            stale.append(self.model_path_for(cfg))
        try:
            # The record is renamed into place last: a record on disk implies its head and predictions are too;
            # the journal (medft_bench.io) finishes the unit if this process is killed between the renames.
            tensors = [(p, t) for p, t in ((self.head_path_for(cfg), head_state),
                                           (self.model_path_for(cfg), model_state)) if t is not None]
            with atomic_paths([*(p for p, _ in tensors), *(pred_dir / name for name in predictions), path],
                              remove=stale) as tmps:
                for tmp, (_, state) in zip(tmps, tensors):
                    import torch  # here: reading and writing records alone needs no torch

                    with open(tmp, "wb") as fh:  # a file object: a failed write keeps its OSError (ENOSPC) as context
                        torch.save(state, fh)
                for tmp, text in zip(tmps[len(tensors):], predictions.values()):
                    tmp.write_text(text)
                tmps[-1].write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as a RuntimeError
            reason = write_cause(exc)  # torch.save's RuntimeError says "enforce fail"; its context says why
            raise ResultsWriteError(
                f"cannot write the record {path} ({reason}): the cell's result was computed but is not stored; "
                "free space or fix the permissions of the results directory (--results-dir) and run again",
                record=record,
            ) from None
        return path

    @contextlib.contextmanager
    def claim(self, cfg: CellConfig, trial_hash: str | None = None) -> Iterator[None]:
        """Hold an exclusive lock on one cell (or on one trial of a tuned cell) while it is looked up, computed
        and written.

        The lock file and the record's folder are created here, before anything is computed: a results
        directory that cannot be written is a :class:`ResultsWriteError` at once, not after the training.
        """
        lock_dir = self.root / ".locks"
        folder = self.path_for(cfg).parent
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(13, "Permission denied", str(folder))
            name = self.stem_for(cfg) + (f".{trial_hash}" if trial_hash else "")
            fh = open(lock_dir / f"{name}.lock", "a+")
        except OSError as exc:
            raise ResultsWriteError(f"cannot write to the results directory {self.root} ({exc.strerror or exc}: "
                                    f"{exc.filename}); choose a writable --results-dir") from None
        with fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if trial_hash is None:  # the cell's last writer is gone (the lock was free): finish its unit
                    for record, _ in self.places(cfg):
                        complete_commits(record.parent, record.name, force=True)
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

def load_records(roots: list[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], list[LoadProblem]]:
    """Every record under ``roots`` (files or directories), and a problem for each file that fails."""
    records, problems = [], []
    files: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            # a FIFO or socket named *.json is no record, and reading one would block for ever
            files += sorted(p for p in root.rglob("*.json") if is_record_file(p) and is_regular(p))
        else:
            problems.append(LoadProblem(root, "no such file or directory"))
    for path in files:
        try:
            records.append(read_record(path))
        except RecordError as exc:
            problems.append(LoadProblem(path, str(exc)))
    return records, problems
