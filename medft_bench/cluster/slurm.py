"""The grid as a Slurm job array through submitit: each array task runs a part of the grid with the pytest
path's own function (:func:`medft_bench.runner.run_or_reuse`), writing records into the results directory on
the shared filesystem under the store's per-cell lock, atomically.

The submitting machine plans the grid (data identities, stored records and kept trials left out: a second
submission of the same command runs only what is missing) and splits it into parts of whole dependency
groups, so that an LP-FT cell runs in the same task as its LP cell, after it, and reuses its head. A tuned
cell's trials are tasks of their own (``runner.run_trial_or_reuse``: each trial kept in the results
directory), in an array that runs before the cell's: the arrays are stages (:func:`stages`), each submitted
with a Slurm dependency (``afterany``) on the one before. ``--slurm-executor local`` runs the same parts as
processes on this machine through submitit's local executor (no Slurm; it waits for each stage before
submitting the next).
"""

from __future__ import annotations

import argparse
import functools
import logging
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import Job, Trial, plan_grid
from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.results.store import ResultStore
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome


def run_part(cells: list[CellConfig | Trial], env: RunEnv, *, trials_done: bool = False) -> list[Outcome]:
    """One array task: its cells (or trials of tuned cells) in order (an LP cell before the LP-FT cells reusing
    it), each written as it finishes. Bad input of one cell does not stop the others; it is reported in the
    task's result. ``trials_done``: the tuned cells' trials ran in an earlier stage of this submission (with
    ``rerun``, they are reused, not trained again)."""
    import socket

    from medft_bench.runner import attempt, attempt_trial

    env = replace(env, progress=False, rerun_trials=env.rerun and not trials_done)
    env.enter_process()
    # Slurm signals a task (USR2, through submitit) shortly before its time limit. submitit's own handler
    # raises an exception mid-training, which the engine would file as a failed record; as an interruption
    # instead, the running cell leaves no record (the next submission runs it) and the task ends cleanly.
    signal.signal(signal.SIGUSR2, _stop)
    out: list[Outcome] = []
    trials = sum(isinstance(c, Trial) for c in cells)
    what = " and ".join(f"{n} {noun}" for n, noun in ((len(cells) - trials, "cells"), (trials, "trials of tuned cells"))
                        if n) or "nothing"
    print(f"medft-bench: {what} on {socket.gethostname()}", flush=True)
    for n, item in enumerate(cells):
        try:
            outcome = attempt_trial(item.cfg, item.lr, env) if isinstance(item, Trial) else attempt(item, env)
        except KeyboardInterrupt:
            print(f"medft-bench: time limit: {_label(item)} and {len(cells) - n - 1} more not run (no record); "
                  "submit the same command again to run them", flush=True)
            out += [Outcome(Kind.NOT_RUN, c.cfg if isinstance(c, Trial) else c, message="the array task's time limit",
                            lr=c.lr if isinstance(c, Trial) else None) for c in cells[n:]]
            break
        print(f"{outcome.label}: {_word(outcome)} {outcome.status or ''} ({outcome.seconds:.1f} s)"
              f"{' ' + outcome.message if outcome.message else ''}", flush=True)
        out.append(outcome)
    return out


def _word(o: Outcome) -> str:
    """An outcome as the task's log says it: written (a record or a trial kept), reused, skipped, error, timeout."""
    if o.kind is Kind.NOT_RUN:
        return "timeout"
    if o.kind.skipped:
        return "skipped"
    if o.kind is Kind.ERROR or (o.kind is Kind.FAILED and o.lr is not None):  # a failed trial is not kept
        return "error"
    return "reused" if o.reused else "written"


def _label(item: CellConfig | Trial) -> str:
    return item.label if isinstance(item, Trial) else item.cell_id


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def stages(jobs: list[Job]) -> list[list[Job]]:
    """``jobs`` in the arrays that run one after the other: a task waits for the trials it needs (a tuned
    cell's) in an earlier array, and so does a trial for the cell it reuses (LP-FT's trials, the LP cell);
    a cell reusing a cell of the same array runs in its task, after it (:func:`split`). Without tuned cells,
    one array."""
    by_key = {j.key: j for j in jobs}
    depth: dict[str, int] = {}

    def of(job: Job) -> int:
        if job.key not in depth:
            depth[job.key] = 0  # a cycle would be a strategy reusing itself; it cannot recurse forever
            depth[job.key] = max((of(by_key[k]) + (job.trial is not None or by_key[k].trial is not None)
                                  for k in sorted(job.needs) if k in by_key), default=0)
        return depth[job.key]

    out: dict[int, list[Job]] = {}
    for job in jobs:
        out.setdefault(of(job), []).append(job)
    return [out[d] for d in sorted(out)]


def split(jobs: list[Job], parts: int) -> list[list[CellConfig | Trial]]:
    """``jobs`` (one stage's) in at most ``parts`` lists of whole dependency groups (a cell with the cells
    that reuse it, in the plan's order), dealt round-robin, so that the parts are of similar size. A trial is
    a group of its own."""
    by_key = {j.key: j for j in jobs}
    groups: dict[str, list[CellConfig | Trial]] = {}
    for job in jobs:  # the plan puts needed cells first: a group's head exists before its members arrive
        inside = sorted(k for k in job.needs if k in by_key)  # what an earlier stage ran is no group's head
        root = inside[0] if inside else None
        while root is not None and (more := sorted(k for k in by_key[root].needs if k in by_key)):
            root = more[0]  # chains, should a strategy ever reuse a reuser
        groups.setdefault(root or job.key, []).append(job.trial or job.cfg)
    out: list[list[CellConfig | Trial]] = [[] for _ in range(min(parts, len(groups)))]
    for i, group in enumerate(groups.values()):
        out[i % len(out)] += group
    return out


def run_grid_on_slurm(args: argparse.Namespace, *, gpu: bool) -> int:
    """Plan the grid, submit it as one array per stage (one stage without tuned cells), and (with
    ``--slurm-wait``) wait and report each task."""
    from medft_bench.options import build_cells

    try:
        import submitit
    except ImportError:
        raise MedftError("submitit is not installed: pip install 'medft-bench[slurm]' (or 'submitit')") from None
    _, cells = build_cells(args)
    cpus = args.slurm_cpus_per_task or (4 if gpu else 1)
    # As a worker on Ray: the device is the task's own (auto), and no per-epoch progress in the task's log.
    env = RunEnv.from_options(args, device=None, progress=False, threads=cpus)
    plan = plan_grid(cells, env)
    for cfg, why in plan.skipped:
        print(f"skipped: {cfg.cell_id}: {why}", file=sys.stderr)
    trials = len(plan.jobs) - plan.cells
    print(f"[slurm] {plan.cells} cells to run"
          + (f" and {trials} trials of tuned cells ({len(plan.reused_trials)} kept before)" if trials else "")
          + f", {len(plan.reused)} reused, {len(plan.skipped)} skipped", file=sys.stderr)
    if not plan.jobs:
        return 0
    if args.slurm_tasks is not None and args.slurm_tasks < 1:
        raise MedftError("--slurm-tasks must be at least 1")
    gpus = args.slurm_gpus_per_task if args.slurm_gpus_per_task is not None else (1 if gpu else 0)
    log_dir = Path(args.slurm_log_dir or Path(args.results_dir) / ".slurm")
    executor = submitit.AutoExecutor(folder=log_dir, cluster=args.slurm_executor)
    params: dict[str, Any] = {"name": f"medft-{args.tier}", "gpus_per_node": gpus, "cpus_per_task": cpus,
                              "timeout_min": args.slurm_time}
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.slurm_mem_gb:
        params["mem_gb"] = args.slurm_mem_gb
    task = functools.partial(run_part, env=env, trials_done=True)
    all_jobs: list[Any] = []
    all_parts: list[list[CellConfig | Trial]] = []
    arrays = stages(plan.jobs)
    for n, stage in enumerate(arrays):
        parts = split(stage, args.slurm_tasks or len(stage))
        stage_params = {**params, "slurm_array_parallelism": args.slurm_parallel or len(parts)}
        if all_jobs and args.slurm_executor == "slurm":  # after the whole previous array, however it ended
            stage_params["slurm_dependency"] = f"afterany:{_array_id(all_jobs[-1])}"
        elif all_jobs:  # the local executor has no dependencies: this stage starts when the last one ended
            for job in all_jobs:
                job.wait()
        executor.update_parameters(**stage_params)
        jobs = executor.map_array(task, parts)
        what = "tasks" if len(arrays) == 1 else f"tasks (stage {n + 1} of {len(arrays)})"
        print(f"[slurm] submitted {len(parts)} {what} ({args.slurm_executor} executor): {jobs[0].job_id} .. "
              f"{jobs[-1].job_id}; each task's output: {jobs[0].paths.stdout} (and .err; the job id varies)",
              file=sys.stderr)
        all_jobs += jobs
        all_parts += parts
    if not args.slurm_wait:
        print("[slurm] follow with squeue / sacct; the same command again submits only the cells without a "
              "record", file=sys.stderr)
        return 0
    return _wait(all_jobs, all_parts, FailureLog(args.results_dir), args.slurm_executor)


def _array_id(job: Any) -> str:
    """An array's job id (``1234`` of ``1234_7``): a dependency on it waits for every task of the array."""
    return str(job.job_id).split("_")[0]


class _OnceSacct(logging.Filter):
    """A cluster without job accounting (no sacct) makes submitit warn on every poll; once is enough."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "sacct" not in record.getMessage():
            return True
        first, _OnceSacct.seen = not _OnceSacct.seen, True
        return first


def _wait(jobs: list[Any], parts: list[list[CellConfig | Trial]], failures: FailureLog, engine: str) -> int:
    """Each task's outcomes; the cells left without a record go on the failure list. A trial's problem is
    reported only: its cell, in a later stage, runs a trial that was not kept itself."""
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
                if not isinstance(cfg, Trial) and done.lookup(cfg) is None:
                    failures.add(cfg, reason, engine=f"slurm-{engine}", attempts=1)
                    bad += 1
            continue
        for cfg, o in zip(part, outcomes):
            if isinstance(cfg, Trial):
                if o.kind in (Kind.FAILED, Kind.ERROR, Kind.NOT_RUN):
                    print(f"trial not kept: {o.label}: {o.message[:200]} (its cell runs it)", file=sys.stderr)
            elif o.kind in (Kind.ERROR, Kind.NOT_RUN):
                failures.add(cfg, o.message, engine=f"slurm-{engine}", attempts=1)
                if o.kind is Kind.ERROR:
                    print(f"failed: {o.label}: {o.message}", file=sys.stderr)
                bad += 1
            elif not o.kind.skipped:  # a record: ok, diverged or failed
                failures.clear(cfg)
                bad += o.kind is Kind.FAILED
        print(f"[slurm] task {job.job_id}: " + ", ".join(f"{o.label} {_word(o)}" for o in outcomes),
              file=sys.stderr)
    return 1 if bad else 0
