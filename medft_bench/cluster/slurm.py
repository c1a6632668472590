"""The grid as a Slurm job array through submitit: each array task runs a part of the grid with the pytest
path's own function (:func:`medft_bench.runner.run_or_reuse`), writing records into the results directory on
the shared filesystem under the store's per-cell lock, atomically.

The submitting machine plans the grid (data identities, stored records left out: a second submission of
the same command runs only what is missing) and splits it into parts of whole dependency groups, so that an
LP-FT cell runs in the same task as its LP cell, after it, and reuses its head. ``--slurm-executor local``
runs the same parts as processes on this machine through submitit's local executor (no Slurm).
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import Job, plan_grid
from medft_bench.config import CellConfig
from medft_bench.errors import DatasetNotFoundError, MedftError, NotApplicable
from medft_bench.results.store import ResultStore


@dataclass
class CellOutcome:
    cell_id: str
    config_hash: str
    kind: str  # written | reused | skipped | error | timeout
    status: str | None = None  # the record's status
    message: str = ""


def run_part(cells: list[CellConfig], results_dir: str, *, data_root: str | None = None, download: bool = True,
             folder_datasets: tuple[str, ...] = (), threads: int | None = None, rerun: bool = False
             ) -> list[CellOutcome]:
    """One array task: its cells in order (an LP cell before the LP-FT cells reusing it), each written as it
    finishes. Bad input of one cell does not stop the others; it is reported in the task's result."""
    import socket

    import torch

    from medft_bench.data.folders import register_from_option, registry
    from medft_bench.runner import run_or_reuse

    if threads:
        torch.set_num_threads(threads)
    # Slurm signals a task (USR2, through submitit) shortly before its time limit. submitit's own handler
    # raises an exception mid-training, which the engine would file as a failed record; as an interruption
    # instead, the running cell leaves no record (the next submission runs it) and the task ends cleanly.
    signal.signal(signal.SIGUSR2, _stop)
    for text in folder_datasets:
        if text.partition("=")[0] not in registry():
            register_from_option(text)
    out = []
    print(f"medft-bench: {len(cells)} cells on {socket.gethostname()}", flush=True)
    for n, cfg in enumerate(cells):
        t0 = time.perf_counter()
        try:
            o = run_or_reuse(cfg, results_dir, rerun=rerun, data_root=data_root, download=download, progress=False)
            outcome = CellOutcome(cfg.cell_id, cfg.config_hash, "reused" if o.reused else "written",
                                  o.record["status"], o.record.get("error") or "")
        except (NotApplicable, DatasetNotFoundError) as exc:
            outcome = CellOutcome(cfg.cell_id, cfg.config_hash, "skipped", message=str(exc))
        except MedftError as exc:
            outcome = CellOutcome(cfg.cell_id, cfg.config_hash, "error", message=str(exc))
        except KeyboardInterrupt:
            print(f"medft-bench: time limit: {cfg.cell_id} and {len(cells) - n - 1} more not run (no record); "
                  "submit the same command again to run them", flush=True)
            out += [CellOutcome(c.cell_id, c.config_hash, "timeout", message="the array task's time limit")
                    for c in cells[n:]]
            break
        print(f"{cfg.cell_id}: {outcome.kind} {outcome.status or ''} ({time.perf_counter() - t0:.1f} s)"
              f"{' ' + outcome.message if outcome.message else ''}", flush=True)
        out.append(outcome)
    return out


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def split(jobs: list[Job], parts: int) -> list[list[CellConfig]]:
    """``jobs`` in at most ``parts`` lists of whole dependency groups (a cell with the cells that reuse it,
    in the plan's order), dealt round-robin, so that the parts are of similar size."""
    by_hash = {j.cfg.config_hash: j for j in jobs}
    groups: dict[str, list[CellConfig]] = {}
    for job in jobs:  # the plan puts needed cells first: a group's head exists before its members arrive
        root = next(iter(sorted(job.needs)), None)
        while root is not None and by_hash[root].needs:  # chains, should a strategy ever reuse a reuser
            root = next(iter(sorted(by_hash[root].needs)))
        groups.setdefault(root or job.cfg.config_hash, []).append(job.cfg)
    out: list[list[CellConfig]] = [[] for _ in range(min(parts, len(groups)))]
    for i, group in enumerate(groups.values()):
        out[i % len(out)] += group
    return out


def run_grid_on_slurm(args: argparse.Namespace, *, gpu: bool) -> int:
    """Plan the grid, submit it as one array, and (with ``--slurm-wait``) wait and report each task."""
    from medft_bench.options import build_cells

    try:
        import submitit
    except ImportError:
        raise MedftError("submitit is not installed: pip install 'medft-bench[slurm]' (or 'submitit')") from None
    _, cells = build_cells(args)
    store = ResultStore(args.results_dir)
    plan = plan_grid(cells, store, rerun=args.rerun, data_root=args.data_root, download=not args.no_download)
    for cfg, why in plan.skipped:
        print(f"skipped: {cfg.cell_id}: {why}", file=sys.stderr)
    print(f"[slurm] {len(plan.jobs)} cells to run, {len(plan.reused)} reused, {len(plan.skipped)} skipped",
          file=sys.stderr)
    if not plan.jobs:
        return 0
    if args.slurm_tasks is not None and args.slurm_tasks < 1:
        raise MedftError("--slurm-tasks must be at least 1")
    parts = split(plan.jobs, args.slurm_tasks or len(plan.jobs))
    gpus = args.slurm_gpus_per_task if args.slurm_gpus_per_task is not None else (1 if gpu else 0)
    cpus = args.slurm_cpus_per_task or (4 if gpu else 1)
    log_dir = Path(args.slurm_log_dir or Path(args.results_dir) / ".slurm")
    executor = submitit.AutoExecutor(folder=log_dir, cluster=args.slurm_executor)
    params: dict[str, Any] = {"name": f"medft-{args.tier}", "gpus_per_node": gpus, "cpus_per_task": cpus,
                              "slurm_array_parallelism": args.slurm_parallel or len(parts),
                              "timeout_min": args.slurm_time}
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.slurm_mem_gb:
        params["mem_gb"] = args.slurm_mem_gb
    executor.update_parameters(**params)
    kwargs = {"data_root": args.data_root, "download": not args.no_download,
              "folder_datasets": tuple(args.folder_dataset or ()), "threads": cpus, "rerun": args.rerun}
    jobs = executor.map_array(functools.partial(run_part, results_dir=str(args.results_dir), **kwargs), parts)
    print(f"[slurm] submitted {len(parts)} tasks ({args.slurm_executor} executor): {jobs[0].job_id} .. "
          f"{jobs[-1].job_id}; each task's output: {jobs[0].paths.stdout} (and .err; the job id varies)",
          file=sys.stderr)
    if not args.slurm_wait:
        print("[slurm] follow with squeue / sacct; the same command again submits only the cells without a "
              "record", file=sys.stderr)
        return 0
    return _wait(jobs, parts, FailureLog(args.results_dir), args.slurm_executor)


class _OnceSacct(logging.Filter):
    """A cluster without job accounting (no sacct) makes submitit warn on every poll; once is enough."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "sacct" not in record.getMessage():
            return True
        first, _OnceSacct.seen = not _OnceSacct.seen, True
        return first


def _wait(jobs: list[Any], parts: list[list[CellConfig]], failures: FailureLog, engine: str) -> int:
    bad = 0
    logging.getLogger("submitit").addFilter(_OnceSacct())
    for job, part in zip(jobs, parts):
        try:
            outcomes = job.result()
        except Exception as exc:  # the task died (time limit, node lost, killed): its unfinished cells are listed
            reason = f"array task {job.job_id}: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            print(f"failed: {reason}", file=sys.stderr)
            done = ResultStore(failures.path.parent)
            for cfg in part:
                if done.lookup(cfg) is None:
                    failures.add(cfg, reason, engine=f"slurm-{engine}", attempts=1)
                    bad += 1
            continue
        for cfg, o in zip(part, outcomes):
            if o.kind == "timeout":
                failures.add(cfg, o.message, engine=f"slurm-{engine}", attempts=1)
                bad += 1
            elif o.kind == "error":
                failures.add(cfg, o.message, engine=f"slurm-{engine}", attempts=1)
                print(f"failed: {o.cell_id}: {o.message}", file=sys.stderr)
                bad += 1
            elif o.kind in ("written", "reused"):
                failures.clear(cfg)
                bad += o.status == "failed"
        print(f"[slurm] task {job.job_id}: " + ", ".join(f"{o.cell_id} {o.kind}" for o in outcomes), file=sys.stderr)
    return 1 if bad else 0
