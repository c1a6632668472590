"""The grid as a Slurm job array through submitit: each array task runs a part of the grid with the pytest
path's own functions (``runner.attempt``, ``runner.attempt_trial``: :meth:`Task.attempt`), writing records
into the results directory on the shared filesystem under the store's per-cell lock, atomically.

The submitting machine plans the grid (data identities, stored records and kept trials left out: a second
submission of the same command runs only what is missing) and splits it into parts of whole dependency
groups, so that an LP-FT cell runs in the same task as its LP cell, after it, and reuses its head. A tuned
cell's trials are tasks of their own (each kept in the results directory), in an array that runs before the
cell's: the arrays are stages (:func:`stages`), each submitted with a Slurm dependency (``afterany``) on the
one before. ``--slurm-executor local`` runs the same parts as processes on this machine through submitit's
local executor (no Slurm; it waits for each stage before submitting the next).
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from dataclasses import dataclass, replace
from typing import Any

from medft_bench.cluster.engine import SlurmOptions
from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import Job, Task, plan_grid
from medft_bench.cluster.progress import clock
from medft_bench.cluster.worker import enter
from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.results.store import ResultStore
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome


def run_part(tasks: list[Task], env: RunEnv) -> list[Outcome]:
    """One array task: its cells (or trials of tuned cells) in order (an LP cell before the LP-FT cells reusing
    it), each written as it finishes. Bad input of one cell does not stop the others; it is reported in the
    task's result. ``env.rerun_trials`` False: the tuned cells' trials ran in an earlier stage of this
    submission (with ``rerun``, they are reused, not trained again)."""
    import socket

    env = enter(env)
    # Slurm signals a task (USR2, through submitit) shortly before its time limit. submitit's own handler
    # raises an exception mid-training, which the engine would file as a failed record; as an interruption
    # instead, the running cell leaves no record (the next submission runs it) and the task ends cleanly.
    signal.signal(signal.SIGUSR2, _stop)
    out: list[Outcome] = []
    trials = sum(t.is_trial for t in tasks)
    what = " and ".join(f"{n} {noun}" for n, noun in ((len(tasks) - trials, "cells"), (trials, "trials of tuned cells"))
                        if n) or "nothing"
    print(f"medft-bench: {what} on {socket.gethostname()}", flush=True)
    for n, task in enumerate(tasks):
        try:
            outcome = task.attempt(env)
        except KeyboardInterrupt:
            print(f"medft-bench: time limit: {task.label} and {len(tasks) - n - 1} more not run (no record); "
                  "submit the same command again to run them", flush=True)
            out += [t.outcome(Kind.NOT_RUN, "the array task's time limit") for t in tasks[n:]]
            break
        print(f"{outcome.label}: {_word(task, outcome)} {outcome.status or ''} ({clock(outcome.seconds)})"
              f"{' ' + outcome.message if outcome.message else ''}", flush=True)
        out.append(outcome)
    return out


def _word(task: Task, o: Outcome) -> str:
    """An outcome as the task's log says it: written (a record or a trial kept), reused, skipped, error, timeout."""
    if o.kind is Kind.NOT_RUN:
        return "timeout"
    if o.kind.skipped:
        return "skipped"
    if not task.keeps(o):  # an error; a failed trial is not kept
        return "error"
    return "reused" if o.reused else "written"


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
            depth[job.key] = max((of(by_key[k]) + (job.task.is_trial or by_key[k].task.is_trial)
                                  for k in sorted(job.needs) if k in by_key), default=0)
        return depth[job.key]

    out: dict[int, list[Job]] = {}
    for job in jobs:
        out.setdefault(of(job), []).append(job)
    return [out[d] for d in sorted(out)]


def split(jobs: list[Job], parts: int) -> list[list[Task]]:
    """``jobs`` (one stage's) in at most ``parts`` lists of whole dependency groups (a cell with the cells
    that reuse it, in the plan's order), dealt round-robin, so that the parts are of similar size. A trial is
    a group of its own."""
    by_key = {j.key: j for j in jobs}
    groups: dict[str, list[Task]] = {}
    for job in jobs:  # the plan puts needed cells first: a group's head exists before its members arrive
        inside = sorted(k for k in job.needs if k in by_key)  # what an earlier stage ran is no group's head
        root = inside[0] if inside else None
        while root is not None and (more := sorted(k for k in by_key[root].needs if k in by_key)):
            root = more[0]  # chains, should a strategy ever reuse a reuser
        groups.setdefault(root or job.key, []).append(job.task)
    out: list[list[Task]] = [[] for _ in range(min(parts, len(groups)))]
    for i, group in enumerate(groups.values()):
        out[i % len(out)] += group
    return out


@dataclass(frozen=True)
class SlurmEngine:
    """The :class:`~medft_bench.cluster.engine.Engine` on Slurm (or submitit's local executor): the grid planned
    here and submitted as one array per stage (one stage without tuned cells); with ``wait``, each task
    reported."""

    options: SlurmOptions

    def run(self, cells: list[CellConfig], env: RunEnv) -> int:
        try:
            import submitit
        except ImportError:
            raise MedftError("submitit is not installed: pip install 'medft-bench[slurm]' (or 'submitit')") from None
        opts = self.options
        assert isinstance(env.store, ResultStore), "an array writes into a results directory"
        # As a worker on Ray: torch's threads are the task's CPUs.
        env = replace(env, threads=opts.cpus_per_task)
        plan = plan_grid(cells, env)
        for cfg, why in plan.skipped:
            print(f"skipped: {cfg.cell_id}: {why}", file=sys.stderr)
        trials = len(plan.jobs) - plan.cells
        print(f"[slurm] {plan.cells} cells to run"
              + (f" and {trials} trials of tuned cells ({len(plan.reused_trials)} kept before)" if trials else "")
              + f", {len(plan.reused)} reused, {len(plan.skipped)} skipped", file=sys.stderr)
        if not plan.jobs:
            return 0
        executor = submitit.AutoExecutor(folder=opts.log_dir or env.store.root / ".slurm", cluster=opts.executor)
        params: dict[str, Any] = {"name": opts.name, "gpus_per_node": opts.gpus_per_task,
                                  "cpus_per_task": opts.cpus_per_task, "timeout_min": opts.time_min}
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
        # A tuned cell's trials ran in an earlier stage of this submission: with rerun too, they are reused.
        task = functools.partial(run_part, env=replace(env, rerun_trials=False))
        all_jobs: list[Any] = []
        all_parts: list[list[Task]] = []
        arrays = stages(plan.jobs)
        for n, stage in enumerate(arrays):
            parts = split(stage, opts.tasks or len(stage))
            stage_params = {**params, "slurm_array_parallelism": opts.parallel or len(parts)}
            if all_jobs and opts.executor == "slurm":  # after the whole previous array, however it ended
                stage_params["slurm_dependency"] = f"afterany:{_array_id(all_jobs[-1])}"
            elif all_jobs:  # the local executor has no dependencies: this stage starts when the last one ended
                for job in all_jobs:
                    job.wait()
            executor.update_parameters(**stage_params)
            jobs = executor.map_array(task, parts)
            what = "tasks" if len(arrays) == 1 else f"tasks (stage {n + 1} of {len(arrays)})"
            print(f"[slurm] submitted {len(parts)} {what} ({opts.executor} executor): {jobs[0].job_id} .. "
                  f"{jobs[-1].job_id}; each task's output: {jobs[0].paths.stdout} (and .err; the job id varies)",
                  file=sys.stderr)
            all_jobs += jobs
            all_parts += parts
        if not opts.wait:
            print("[slurm] follow with squeue / sacct; the same command again submits only the cells without a "
                  "record", file=sys.stderr)
            return 0
        return _wait(all_jobs, all_parts, FailureLog(env.store.root), f"slurm-{opts.executor}")


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


def _stored(store: ResultStore, cfg: CellConfig) -> bool:
    """The cell's record is in ``store`` (a file that blocks it, unreadable, is not its record)."""
    try:
        return store.lookup(cfg) is not None
    except MedftError:
        return False

def _wait(jobs: list[Any], parts: list[list[Task]], failures: FailureLog, engine: str) -> int:
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
            for task in part:
                if not task.is_trial and not _stored(done, task.cfg):
                    failures.add(task.cfg, reason, engine=engine, attempts=1)
                    bad += 1
            continue
        for task, o in zip(part, outcomes):
            if o.kind.skipped:
                continue
            if task.is_trial:
                if not task.keeps(o):
                    print(f"trial not kept: {o.label}: {o.message[:200]} (its cell runs it)", file=sys.stderr)
            elif not task.keeps(o):  # an error, or not run: no record
                failures.add(task.cfg, o.message, engine=engine, attempts=1)
                if o.kind is Kind.ERROR:
                    print(f"failed: {o.label}: {o.message}", file=sys.stderr)
                bad += 1
            else:  # a record: ok, diverged or failed
                failures.clear(task.cfg)
                bad += o.kind is Kind.FAILED
        print(f"[slurm] task {job.job_id}: " + ", ".join(f"{o.label} {_word(t, o)}" for t, o in zip(part, outcomes)),
              file=sys.stderr)
    return 1 if bad else 0
