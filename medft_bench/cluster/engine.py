"""What the cluster engines share: the :class:`Engine` protocol the ``grid`` command runs a grid through, each
engine's options (built once from the command line, :meth:`RayOptions.from_args`, :meth:`SlurmOptions.from_args`),
and a Ray run's tally (:class:`GridSummary`) with its report."""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from medft_bench.cluster.plan import Task
from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.run_env import RunEnv


class Engine(Protocol):
    """Runs (or submits) a grid's cells with the run's settings; returns the command's exit code: 0 done (or
    submitted), 1 a cell failed or did not finish, 130 interrupted."""

    def run(self, cells: list[CellConfig], env: RunEnv) -> int: ...


@dataclass(frozen=True)
class RayOptions:
    address: str = "local"  # "local": start a Ray instance on this machine; "auto" or ray://host:port: join
    num_cpus: int | None = None  # a local instance's CPUs (None: Ray's default, all of them)
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    max_retries: int = 2  # a worker lost (crash, OOM kill, node gone) is retried this many times
    timeout_s: float | None = None  # the whole run's time limit: cells still out are cancelled

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, gpu: bool) -> RayOptions:
        """From ``grid``'s arguments; ``gpu``: the tier needs a GPU (and ``--allow-cpu`` was not given)."""
        opts = cls(address=args.ray_address, num_cpus=args.ray_cpus,
                   cpus_per_cell=args.cpus_per_cell if args.cpus_per_cell is not None else (4.0 if gpu else 1.0),
                   gpus_per_cell=args.gpus_per_cell if args.gpus_per_cell is not None else (1.0 if gpu else 0.0),
                   max_retries=args.max_retries, timeout_s=args.timeout)
        if opts.max_retries < 0 or opts.cpus_per_cell < 0 or opts.gpus_per_cell < 0:
            raise MedftError("--max-retries, --cpus-per-cell and --gpus-per-cell cannot be negative")
        return opts


@dataclass(frozen=True)
class SlurmOptions:
    name: str = "medft"  # the jobs' name
    tasks: int | None = None  # array tasks per stage (None: one per cell group)
    parallel: int | None = None  # array tasks at once (None: all)
    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1  # also the task's torch threads
    mem_gb: int | None = None
    time_min: int = 240
    log_dir: Path | None = None  # None: RESULTS_DIR/.slurm
    executor: str = "slurm"  # or "local": submitit's local executor
    wait: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, gpu: bool) -> SlurmOptions:
        """From ``grid``'s arguments; ``gpu``: the tier needs a GPU (and ``--allow-cpu`` was not given)."""
        if args.slurm_tasks is not None and args.slurm_tasks < 1:
            raise MedftError("--slurm-tasks must be at least 1")
        return cls(name=f"medft-{args.tier}", tasks=args.slurm_tasks, parallel=args.slurm_parallel,
                   partition=args.slurm_partition or None, cpus_per_task=args.slurm_cpus_per_task or (4 if gpu else 1),
                   gpus_per_task=args.slurm_gpus_per_task if args.slurm_gpus_per_task is not None else int(gpu),
                   mem_gb=args.slurm_mem_gb or None, time_min=args.slurm_time,
                   log_dir=Path(args.slurm_log_dir) if args.slurm_log_dir else None, executor=args.slurm_executor,
                   wait=args.slurm_wait)


@dataclass
class GridSummary:
    """A Ray run's tally, told by :func:`report`."""

    written: list[CellConfig] = field(default_factory=list)
    reused: list[CellConfig] = field(default_factory=list)
    skipped: list[tuple[CellConfig, str]] = field(default_factory=list)
    failed: list[tuple[CellConfig, str]] = field(default_factory=list)  # a failed record, or none (the reason)
    cancelled: list[CellConfig] = field(default_factory=list)
    retries: list[tuple[Task, int, str]] = field(default_factory=list)  # (cell or trial, attempt lost, why)
    trials_kept: list[tuple[CellConfig, float]] = field(default_factory=list)  # trial tasks kept by this run
    trials_reused: int = 0  # trials kept by an earlier run
    # Trial tasks that left nothing to keep (failed, worker lost after its retries, not written): their cell
    # runs them itself, and fails with a failed one.
    trials_not_kept: list[tuple[CellConfig, float, str]] = field(default_factory=list)
    overhead_s: list[float] = field(default_factory=list)  # per task: round trip minus the worker's own seconds
    interrupted: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed or self.cancelled or self.interrupted or self.timed_out)


def report(summary: GridSummary) -> int:
    """The run's end: failures with their reasons, retries, cancelled cells; the exit code."""
    out = sys.stderr
    for cfg, why in summary.skipped:  # as every front end reports a skipped cell: not a failure
        print(f"skipped: {cfg.cell_id}: {why[:300]}", file=out)
    for task, attempt, why in summary.retries:
        what = "a trial; " if task.is_trial else ""
        print(f"retried: {task.label} ({what}worker lost on attempt {attempt}: {why[:160]})", file=out)
    for cfg, lr, why in summary.trials_not_kept:
        print(f"trial not kept: {cfg.cell_id} lr={lr:g}: {why[:200]} (its cell ran it)", file=out)
    for cfg, why in summary.failed:
        print(f"failed: {cfg.cell_id}: {why[:300]}", file=out)
    if summary.cancelled:
        print(f"not finished: {len(summary.cancelled)} cells (cancelled"
              f"{' at the time limit' if summary.timed_out else ''}); run the same command again to resume",
              file=out)
    if summary.overhead_s:
        o = summary.overhead_s
        trials = (f", trials kept: {len(summary.trials_kept)} (+{summary.trials_reused} from an earlier run)"
                  if summary.trials_kept or summary.trials_reused else "")
        print(f"records written: {len(summary.written)}{trials}; engine overhead per task (round trip minus the "
              f"task's own time): median {statistics.median(o) * 1000:.0f} ms, max {max(o) * 1000:.0f} ms (a new "
              "worker process imports torch)", file=out)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1
