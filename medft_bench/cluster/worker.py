"""What one cluster task runs: one cell through :func:`medft_bench.runner.attempt`, its outcome (record and
head) returned to the driver (which writes them), or one trial of a tuned cell, its summary returned to the
driver (which keeps it with ``ResultStore.write_trial``, the file the pytest path keeps). :func:`enter` is a
worker's setup, Ray's and a Slurm array task's.

A Ray worker does not write to the results directory (the driver is the one writer, so the cluster needs no
shared-filesystem locking); the records a cell reuses (LP-FT's probe) and a tuned cell's kept trials are
shipped to it by the driver and served by :class:`ShippedStore`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.cluster.plan import Task
from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.results.view import RecordView
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome

if TYPE_CHECKING:
    import torch

# Test-only: a folder; the first attempt of each task (a cell: its config hash; a trial: its trial hash) without
# a marker there creates one and kills its worker process after computing, before returning, so that the
# engine's retry runs the task again (tests/e2e/test_cluster_ray.py; a marker made beforehand spares its task).
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

    def __init__(self, shipped: list[Shipped], trials: Sequence[dict[str, Any]] | None = None) -> None:
        self._by_hash = {s.config_hash: s for s in shipped}
        self._trials = {t["trial_hash"]: t for t in trials or ()}

    def lookup(self, cfg: CellConfig) -> dict[str, Any] | None:
        s = self._by_hash.get(cfg.config_hash)
        return None if s is None else s.record

    def load_head(self, cfg: CellConfig) -> dict[str, torch.Tensor] | None:
        s = self._by_hash.get(cfg.config_hash)
        return None if s is None or not RecordView(s.record).ok else s.head

    def read_trial(self, cfg: CellConfig, trial_hash: str) -> dict[str, Any] | None:
        return self._trials.get(trial_hash)

    def write_trial(self, cfg: CellConfig, trial: dict[str, Any]) -> None:
        return None  # the trial task's summary goes back to the driver, which keeps it

    def write(self, record: dict[str, Any], cfg: CellConfig, head_state: dict[str, torch.Tensor] | None = None,
              predictions: dict[str, str] | None = None,
              model_state: dict[str, torch.Tensor] | None = None) -> None:
        return None  # the record goes back to the driver in the task's outcome, and the driver writes it

    def path_for(self, cfg: CellConfig) -> None:
        return None

    def record_path(self, cfg: CellConfig) -> None:
        return None

    @contextlib.contextmanager
    def claim(self, cfg: CellConfig, trial_hash: str | None = None) -> Iterator[None]:
        yield


def enter(env: RunEnv, **settings: Any) -> RunEnv:
    """A worker's run environment, Ray's or a Slurm array task's: the driver's with ``settings`` and no
    per-epoch progress (nothing on a worker prints it), this process made ready (threads, folder datasets).
    Raises :class:`MedftError` when it cannot be (a folder dataset missing on this node)."""
    env = replace(env, progress=False, **settings)
    env.enter_process()
    return env


def run_task(task: Task, shipped: list[Shipped], env: RunEnv,
             trials: Sequence[dict[str, Any]] = ()) -> Outcome:
    """Run one Ray task on this worker: a cell (``cfg.data_id`` filled in by the driver), its kept ``trials``
    reused, or one trial of a tuned cell. The outcome's record (or trial) is not written: the driver writes it.
    ``env``: the driver's, its store swapped for what was shipped."""
    t0 = time.perf_counter()
    # What the driver planned is what runs: the shipped trials are the ones to use (it already chose them under
    # --rerun).
    try:
        env = enter(env, store=ShippedStore(shipped, trials), rerun=False, rerun_trials=False)
    except MedftError as exc:
        return task.outcome(Kind.ERROR, str(exc), seconds=time.perf_counter() - t0)
    out = task.attempt(env)
    if out.kind in (Kind.COMPUTED, Kind.DIVERGED, Kind.FAILED):
        _exit_once(task.own_hash, out.label)
    out.seconds = time.perf_counter() - t0
    return out


def _exit_once(key: str, label: str) -> None:
    folder = os.environ.get(EXIT_ONCE_ENV)
    if not folder:
        return
    marker = Path(folder) / key
    if not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{label}: the first attempt's worker exited (pid {os.getpid()})\n")
        os._exit(1)
