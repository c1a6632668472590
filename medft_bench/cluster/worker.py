"""What one cluster task runs: one cell, its record and head returned to the driver (which writes them), or
one trial of a tuned cell, its summary returned to the driver (which keeps it with ``ResultStore.write_trial``,
the file the pytest path keeps).

A Ray worker does not write to the results directory (the driver is the one writer, so the cluster needs no
shared-filesystem locking); the records a cell reuses (LP-FT's probe) and a tuned cell's kept trials are
shipped to it by the driver and served by :class:`ShippedStore`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.config import CellConfig
from medft_bench.errors import DatasetNotFoundError, MedftError, NotApplicable

if TYPE_CHECKING:
    import torch

# Test-only: a folder; the first attempt of each task (a cell: its config hash; a trial: its trial hash) without
# a marker there creates one and kills its worker process after computing, before returning, so that the
# engine's retry runs the task again (tests/test_cluster_ray.py; a marker made beforehand spares its task).
EXIT_ONCE_ENV = "MEDFT_TEST_WORKER_EXIT_ONCE"


@dataclass
class Shipped:
    """A stored record (and its head) that a cell reuses, sent along with the cell."""

    config_hash: str
    record: dict[str, Any]
    head: dict[str, torch.Tensor] | None


class ShippedStore:
    """The store a worker's task sees: the shipped records for reuse and a tuned cell's shipped trial
    summaries (the trials kept by the driver; one not shipped, the cell runs itself); no writes, no locks (a
    task is alone with what was shipped to it)."""

    def __init__(self, shipped: list[Shipped], trials: list[dict[str, Any]] | None = None) -> None:
        self._by_hash = {s.config_hash: s for s in shipped}
        self._trials = {t["trial_hash"]: t for t in trials or ()}

    def lookup(self, cfg: CellConfig) -> dict[str, Any] | None:
        s = self._by_hash.get(cfg.config_hash)
        return None if s is None else s.record

    def load_head(self, cfg: CellConfig) -> dict[str, torch.Tensor] | None:
        s = self._by_hash.get(cfg.config_hash)
        return None if s is None or s.record["status"] != "ok" else s.head

    def read_trial(self, cfg: CellConfig, trial_hash: str) -> dict[str, Any] | None:
        return self._trials.get(trial_hash)

    def write_trial(self, cfg: CellConfig, trial: dict[str, Any]) -> None:
        return None  # the trial task's summary goes back to the driver, which keeps it

    @contextlib.contextmanager
    def claim(self, cfg: CellConfig, trial_hash: str | None = None) -> Iterator[None]:
        yield


@dataclass
class WorkerSettings:
    """What every task needs besides its cell: the grid run's data options."""

    data_root: str | None = None
    download: bool = True
    folder_datasets: tuple[str, ...] = ()  # --folder-dataset options: registries are per process
    threads: int | None = None  # torch CPU threads (the task's CPUs)


@dataclass
class TaskResult:
    """``kind``: ``record`` (record and head to write), ``trial`` (a trial's summary to keep unless it
    failed), ``skipped`` (no data, strategy not applicable) or ``error`` (bad input: no record, the reason in
    ``message``)."""

    kind: str
    record: dict[str, Any] | None = None
    head: dict[str, torch.Tensor] | None = None
    predictions: dict[str, str] | None = None
    message: str = ""
    seconds: float = 0.0
    host: str = field(default_factory=socket.gethostname)
    trial: dict[str, Any] | None = None


def run_task(cfg: CellConfig, shipped: list[Shipped], settings: WorkerSettings, *, lr: float | None = None,
             trials: list[dict[str, Any]] | None = None) -> TaskResult:
    """Run one cell on this worker (``cfg.data_id`` filled in by the driver), its kept ``trials`` reused; or,
    with ``lr``, that one trial of the tuned cell."""
    import torch

    from medft_bench.data.folders import register_from_option, registry
    from medft_bench.runner import compute_cell
    from medft_bench.training.tuning import compute_trial, trial_hash

    t0 = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    store = ShippedStore(shipped, trials)
    try:
        for text in settings.folder_datasets:
            if text.partition("=")[0] not in registry():
                register_from_option(text)
        if lr is not None:
            summary = compute_trial(cfg, lr, store=store, data_root=settings.data_root, progress=False,
                                    download=settings.download)
            _exit_once(trial_hash(cfg, lr), f"{cfg.cell_id} lr={lr:g}")
            return TaskResult("trial", trial=summary, seconds=time.perf_counter() - t0)
        result = compute_cell(cfg, store, data_root=settings.data_root, progress=False, download=settings.download)
    except (NotApplicable, DatasetNotFoundError) as exc:
        return TaskResult("skipped", message=str(exc), seconds=time.perf_counter() - t0)
    except MedftError as exc:
        return TaskResult("error", message=str(exc), seconds=time.perf_counter() - t0)
    _exit_once(cfg.config_hash, cfg.cell_id)
    return TaskResult("record", record=result.record, head=result.head_state, predictions=result.predictions,
                      seconds=time.perf_counter() - t0)


def _exit_once(key: str, label: str) -> None:
    folder = os.environ.get(EXIT_ONCE_ENV)
    if not folder:
        return
    marker = Path(folder) / key
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{label}: the first attempt's worker exited (pid {os.getpid()})\n")
        os._exit(1)
