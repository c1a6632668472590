"""The results store: one JSON record per cell, keyed by the cell's config hash; the one writer.

Writes are atomic (temporary file in the same directory, then ``os.replace``), so an interrupted run
never leaves a partial record, and two processes writing the same directory never corrupt one. A per-cell
lock lets concurrent runs (pytest-xdist workers, two shells) compute each cell once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.config import CellConfig
from medft_bench.errors import RecordError
from medft_bench.results.record import validate

if TYPE_CHECKING:  # torch is imported where used: reading records (the leaderboard) needs no torch
    import torch

REUSABLE = ("ok", "diverged")  # a failed cell is computed again on the next run


@dataclass
class LoadProblem:
    path: Path
    reason: str


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def read_record(path: Path) -> dict[str, Any]:
    """Read and validate one record; :class:`RecordError` names the file and the problem."""
    try:
        record = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    validate(record, str(path))
    return record


class ResultStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_for(self, cfg: CellConfig) -> Path:
        return self.root / cfg.tier / f"{cfg.cell_id}__{cfg.config_hash}.json"

    def head_path_for(self, cfg: CellConfig) -> Path:
        return self.path_for(cfg).with_suffix(".head.pt")

    def lookup(self, cfg: CellConfig) -> dict[str, Any] | None:
        """The stored record for exactly this configuration, when it is valid and reusable."""
        path = self.path_for(cfg)
        if not path.is_file():
            return None
        try:
            record = read_record(path)
        except RecordError:
            return None  # a broken file is recomputed and replaced atomically
        if record["config_hash"] != cfg.config_hash or record["status"] not in REUSABLE:
            return None
        return record

    def load_head(self, cfg: CellConfig) -> dict[str, torch.Tensor] | None:
        """The trained head saved with a cell's ok record, or None."""
        record = self.lookup(cfg)
        path = self.head_path_for(cfg)
        if record is None or record["status"] != "ok" or not path.is_file():
            return None
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            return None

    def write(self, record: dict[str, Any], cfg: CellConfig, head_state: dict[str, torch.Tensor] | None = None
              ) -> Path:
        validate(record, cfg.cell_id)
        path = self.path_for(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        if head_state is not None:  # written first: a record on disk implies its head is there too
            import torch

            tmp = path.with_name(f".{path.stem}.{os.getpid()}.head.tmp")
            try:
                torch.save(head_state, tmp)
                os.replace(tmp, self.head_path_for(cfg))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        _atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode())
        return path

    @contextlib.contextmanager
    def claim(self, cfg: CellConfig) -> Iterator[None]:
        """Hold an exclusive lock on one cell while it is looked up, computed and written."""
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{cfg.cell_id}__{cfg.config_hash}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def records(self) -> tuple[list[dict[str, Any]], list[LoadProblem]]:
        return load_records([self.root])


def load_records(roots: list[str | os.PathLike[str]]) -> tuple[list[dict[str, Any]], list[LoadProblem]]:
    """Every record under ``roots`` (files or directories), and a problem for each file that fails."""
    records, problems = [], []
    files: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += sorted(p for p in root.rglob("*.json") if not p.name.startswith("."))
        else:
            problems.append(LoadProblem(root, "no such file or directory"))
    for path in files:
        try:
            records.append(read_record(path))
        except RecordError as exc:
            problems.append(LoadProblem(path, str(exc)))
    return records, problems
