"""The one front door onto the engine used by the CLI and the pytest cases: reuse, or run and write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft_bench.config import CellConfig
from medft_bench.results.store import ResultStore


@dataclass
class Outcome:
    record: dict[str, Any]
    path: Path
    reused: bool


def run_or_reuse(cfg: CellConfig, results_dir: str | Path, *, rerun: bool = False, data_root: Any = None,
                 device: Any = None, progress: bool | None = None, download: bool = True) -> Outcome:
    """Reuse the stored record of this exact configuration, or run the cell and store its record."""
    store = ResultStore(results_dir)
    with store.claim(cfg):
        if not rerun and (record := store.lookup(cfg)) is not None:
            return Outcome(record, store.path_for(cfg), True)
        from medft_bench.training.engine import run_cell  # imported only to compute: a reuse is a lookup

        result = run_cell(cfg, data_root=data_root, device=device, store=store, progress=progress,
                          download=download)
        path = store.write(result.record, cfg, result.head_state)
    return Outcome(result.record, path, False)
