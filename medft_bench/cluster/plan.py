"""A grid made ready for an engine: data identities filled in, stored records reused, and the order in
which cells that other cells reuse (LP before LP-FT) run first."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from medft_bench.config import CellConfig
from medft_bench.errors import DatasetNotFoundError
from medft_bench.results.store import ResultStore


@dataclass
class Job:
    """One cell to compute. ``needs``: config hashes of cells in this run whose results it reuses (it is
    submitted after they finish, however they end); ``reuses``: the cells whose stored record and head
    the driver ships with it when they exist."""

    cfg: CellConfig
    needs: set[str] = field(default_factory=set)
    reuses: tuple[CellConfig, ...] = ()
    attempts: int = 0


@dataclass
class Plan:
    jobs: list[Job]  # in submission order
    reused: list[CellConfig]
    skipped: list[tuple[CellConfig, str]]


def plan_grid(cells: list[CellConfig], store: ResultStore, *, rerun: bool = False, data_root: Any = None,
              download: bool = True) -> Plan:
    """Which cells to compute, which are reused, which cannot run (no data: skipped, as the pytest path
    skips them). Cells another cell reuses go first, so that LP-FT finds its LP cell's head."""
    from medft_bench.data.sources import data_identity
    from medft_bench.strategies.registry import create_strategy

    jobs: list[Job] = []
    reused: list[CellConfig] = []
    skipped: list[tuple[CellConfig, str]] = []
    seen: set[str] = set()
    for cfg in cells:
        if not cfg.data_id:
            try:
                cfg = replace(cfg, data_id=data_identity(cfg.dataset, cfg.img_size, synthetic_data=cfg.synthetic,
                                                         root=data_root, download=download))
            except DatasetNotFoundError as exc:
                skipped.append((cfg, str(exc)))
                continue
        if cfg.config_hash in seen:
            continue
        seen.add(cfg.config_hash)
        if not rerun and store.lookup(cfg) is not None:
            reused.append(cfg)
            continue
        jobs.append(Job(cfg, reuses=create_strategy(cfg.strategy, **cfg.params()).reused_cells(cfg)))
    running = {j.cfg.config_hash for j in jobs}
    for job in jobs:
        job.needs = {c.config_hash for c in job.reuses if c.config_hash in running}
    needed = set().union(*(j.needs for j in jobs)) if jobs else set()
    jobs.sort(key=lambda j: j.cfg.config_hash not in needed)  # stable: the grid's order otherwise
    return Plan(jobs, reused, skipped)
