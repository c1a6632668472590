"""What one cluster task runs: one cell, its record and head returned to the driver (which writes them).

A Ray worker does not write to the results directory (the driver is the one writer, so the cluster needs no
shared-filesystem locking); the records a cell reuses (LP-FT's probe) are shipped to it by the driver and
served by :class:`ShippedStore`.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.config import CellConfig
from medft_bench.errors import DatasetNotFoundError, MedftError, NotApplicable

if TYPE_CHECKING:
    import torch

# Test-only: a folder; the first attempt of each cell creates a marker there and kills its worker process
# after computing, before returning, so that the engine's retry runs the cell again (tests/test_cluster_ray.py).
EXIT_ONCE_ENV = "MEDFT_TEST_WORKER_EXIT_ONCE"


@dataclass
class Shipped:
    """A stored record (and its head) that a cell reuses, sent along with the cell."""

    config_hash: str
    record: dict[str, Any]
    head: dict[str, torch.Tensor] | None


class ShippedStore:
    """The store a worker's cell sees: the shipped records for reuse, no trial files (a tuned cell on a
    worker runs all its trials; a retry starts the sweep again) and no writes."""

    def __init__(self, shipped: list[Shipped]) -> None:
        self._by_hash = {s.config_hash: s for s in shipped}

    def lookup(self, cfg: CellConfig) -> dict[str, Any] | None:
        s = self._by_hash.get(cfg.config_hash)
        return None if s is None else s.record

    def load_head(self, cfg: CellConfig) -> dict[str, torch.Tensor] | None:
        s = self._by_hash.get(cfg.config_hash)
        return None if s is None or s.record["status"] != "ok" else s.head

    def read_trial(self, cfg: CellConfig, trial_hash: str) -> None:
        return None

    def write_trial(self, cfg: CellConfig, trial: dict[str, Any]) -> None:
        return None


@dataclass
class WorkerSettings:
    """What every task needs besides its cell: the grid run's data options."""

    data_root: str | None = None
    download: bool = True
    folder_datasets: tuple[str, ...] = ()  # --folder-dataset options: registries are per process
    threads: int | None = None  # torch CPU threads (the task's CPUs)


@dataclass
class TaskResult:
    """``kind``: ``record`` (record and head to write), ``skipped`` (no data, strategy not applicable) or
    ``error`` (bad input: no record, the reason in ``message``)."""

    kind: str
    record: dict[str, Any] | None = None
    head: dict[str, torch.Tensor] | None = None
    message: str = ""
    seconds: float = 0.0
    host: str = field(default_factory=socket.gethostname)


def run_task(cfg: CellConfig, shipped: list[Shipped], settings: WorkerSettings) -> TaskResult:
    """Run one cell on this worker (``cfg.data_id`` filled in by the driver)."""
    import torch

    from medft_bench.data.folders import register_from_option, registry
    from medft_bench.runner import compute_cell

    t0 = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    try:
        for text in settings.folder_datasets:
            if text.partition("=")[0] not in registry():
                register_from_option(text)
        result = compute_cell(cfg, ShippedStore(shipped), data_root=settings.data_root, progress=False,
                              download=settings.download)
    except (NotApplicable, DatasetNotFoundError) as exc:
        return TaskResult("skipped", message=str(exc), seconds=time.perf_counter() - t0)
    except MedftError as exc:
        return TaskResult("error", message=str(exc), seconds=time.perf_counter() - t0)
    _exit_once(cfg)
    return TaskResult("record", result.record, result.head_state, seconds=time.perf_counter() - t0)


def _exit_once(cfg: CellConfig) -> None:
    folder = os.environ.get(EXIT_ONCE_ENV)
    if not folder:
        return
    marker = Path(folder) / cfg.config_hash
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{cfg.cell_id}: the first attempt's worker exited (pid {os.getpid()})\n")
        os._exit(1)
