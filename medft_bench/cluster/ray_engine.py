"""The grid on a Ray cluster: one Ray task per cell (and per trial of a tuned cell), the driver the one writer.

Each cell is a task declaring its resources (a GPU when the tier needs one), so Ray packs cells onto the
cluster. Workers return the record and head (:mod:`medft_bench.cluster.worker`); the driver writes them
through the result store as they arrive, so an interrupted driver keeps every finished cell. A task whose
worker died (crash, OOM kill, node lost) is submitted again, ``max_retries`` times at most (by the driver
rather than Ray's own ``max_retries``, so that the run can say which cells were retried and why); then the
cell goes on the failure list (:mod:`medft_bench.cluster.failures`). An exception raised by the cell's
code is not retried: it would raise again. The driver submits at most as many cells as the cluster can run at
once, so that "running" means running, and a cell that reuses another (LP-FT, LP) is submitted after it.
The loop is :class:`Driver`, one method per event.

A tuned cell with a learning-rate grid is one task per trial, then the cell's own task: each trial task returns
its summary, which the driver keeps (``ResultStore.write_trial``, the file the pytest path keeps); the cell's
task, submitted once its trials have finished, gets the kept trials shipped and only chooses among them,
retrains the chosen one and evaluates it on test. A lost trial task is submitted again alone; trials kept by
an earlier run are not run again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from typing import Any, TextIO

from medft_bench.cluster.engine import GridSummary, RayOptions, report
from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import Job, plan_grid
from medft_bench.cluster.progress import Progress
from medft_bench.cluster.worker import EXIT_ONCE_ENV, Shipped, run_task
from medft_bench.config import CellConfig
from medft_bench.errors import MedftError, ResultsWriteError
from medft_bench.results.store import ResultStore, Store
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome

__all__ = ["GridSummary", "RayEngine", "RayOptions", "run_grid_on_ray"]

POLL_S = 1.0  # every wait is bounded: Ctrl-C, the time limit and progress are looked at this often
# Sent to the workers (a cluster started elsewhere does not have the driver's environment).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME", "MEDFT_OFFLINE", "MEDFT_CACHE_DIR", "MEDFT_DATA_ROOT",
                 "MEDFT_FEATURE_CACHE", EXIT_ONCE_ENV)


@dataclass(frozen=True)
class RayEngine:
    """The :class:`~medft_bench.cluster.engine.Engine` on Ray: the run, then its report."""

    options: RayOptions

    def run(self, cells: list[CellConfig], env: RunEnv) -> int:
        return report(run_grid_on_ray(cells, env, self.options))


def _lost_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex

    names = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError", "LocalRayletDiedError",
             "RaySystemError", "ActorUnavailableError")
    return tuple(getattr(rex, n) for n in names if hasattr(rex, n))


def _ship(store: Store, job: Job) -> list[Shipped]:
    out = []
    for cfg in job.reuses:
        record = store.lookup(cfg)
        if record is not None:
            out.append(Shipped(cfg.config_hash, record, store.load_head(cfg)))
    return out


def _ship_trials(store: Store, job: Job, fresh: set[str] | None) -> list[dict[str, Any]]:
    """A tuned cell's kept trials (with ``--rerun``, ``fresh``: only those this run kept); none for a trial or
    a cell with nothing to tune."""
    out = []
    for trial in job.trials:
        if fresh is not None and trial.trial_hash not in fresh:
            continue
        kept = store.read_trial(job.cfg, trial.trial_hash)
        if kept is not None:
            out.append(kept)
    return out


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:400]}"


def connect(opts: RayOptions) -> bool:
    """Join or start Ray; True when this call started it (and the run shuts it down)."""
    try:
        import ray
    except ImportError:
        raise MedftError("Ray is not installed: pip install 'medft-bench[ray]' (or 'ray[default]')") from None
    if ray.is_initialized():
        return False
    if opts.address == "local":
        ray.init(num_cpus=opts.num_cpus, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
    else:
        ray.init(address=opts.address, log_to_driver=False)
    return True


def slots(opts: RayOptions) -> int:
    """How many cells the cluster runs at once (looked up on every submit: a cluster may grow or shrink)."""
    import ray

    res = ray.cluster_resources()
    n = int(res.get("CPU", 0) // opts.cpus_per_cell) if opts.cpus_per_cell else 1 << 30
    if opts.gpus_per_cell:
        n = min(n, int(res.get("GPU", 0) // opts.gpus_per_cell))
    return n


def run_grid_on_ray(cells: list[CellConfig], env: RunEnv, opts: RayOptions, *,
                    stream: TextIO | None = None) -> GridSummary:
    """Run ``cells`` on Ray and write their records through ``env.store`` (a results directory); see the
    module's docstring."""
    import ray

    store = env.store
    if not isinstance(store, ResultStore):
        raise MedftError("a Ray run writes into a results directory: give RunEnv.at(results_dir)")
    plan = plan_grid(cells, env)
    summary = GridSummary(reused=plan.reused, skipped=list(plan.skipped), trials_reused=len(plan.reused_trials))
    progress = Progress(total=len(plan.jobs) + len(plan.reused) + len(plan.skipped), engine="ray",
                        reused=len(plan.reused), skipped=len(plan.skipped),
                        **({"stream": stream} if stream is not None else {}))
    if not plan.jobs:
        progress.show(0, force=True)
        return summary
    started = connect(opts)
    try:
        if slots(opts) < 1:
            have = ray.cluster_resources()
            raise MedftError(f"the Ray cluster cannot run one cell: each needs {opts.cpus_per_cell:g} CPU and "
                             f"{opts.gpus_per_cell:g} GPU, the cluster has {have.get('CPU', 0):g} CPU and "
                             f"{have.get('GPU', 0):g} GPU (--cpus-per-cell, --gpus-per-cell; a CPU-only "
                             "cluster runs a gpu tier with --allow-cpu)")
        env = replace(env, threads=max(1, int(opts.cpus_per_cell)))
        # Per task, not per ray.init: the driver may join a Ray instance started before with other variables.
        env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        remote = ray.remote(run_task).options(num_cpus=opts.cpus_per_cell, num_gpus=opts.gpus_per_cell,
                                              max_retries=0, retry_exceptions=False,
                                              **({"runtime_env": {"env_vars": env_vars}} if env_vars else {}))
        Driver(plan.jobs, remote, env, opts, summary, progress).run()
    finally:
        if started:
            ray.shutdown()
    return summary


class Driver:
    """The loop of one run on Ray, one method per event: a task submitted when a slot is free and what it needs
    has finished; its result collected; it finished (a cell's record written, a trial kept), its worker lost
    (submitted again, or after the last attempt a failure), its code raised (a failure, not retried); the run
    stopped (Ctrl-C, the time limit): what arrived meanwhile kept, the rest cancelled."""

    def __init__(self, queue: list[Job], remote: Any, env: RunEnv, opts: RayOptions, summary: GridSummary,
                 progress: Progress) -> None:
        assert isinstance(env.store, ResultStore)
        self.queue, self.remote, self.env, self.opts = queue, remote, env, opts
        self.store: ResultStore = env.store
        self.failures = FailureLog(self.store.root)
        self.summary, self.progress = summary, progress
        self.pending: dict[Any, tuple[Job, float]] = {}  # object ref -> (job, submitted at)
        self.finished: set[str] = set()  # job keys
        self.fresh: set[str] | None = set() if env.rerun else None  # with rerun: trial hashes kept by this run
        self.capacity = 0  # tasks at once: looked up on every submit

    def run(self) -> None:
        import ray

        deadline = None if self.opts.timeout_s is None else time.monotonic() + self.opts.timeout_s
        try:
            self.submit()
            while self.pending:
                if deadline is not None and time.monotonic() > deadline:
                    self.summary.timed_out = True
                    break
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    self.collect(ref)
                self.submit()
                self.progress.show(self.capacity)
        except KeyboardInterrupt:
            self.summary.interrupted = True
        self.stop()

    def submit(self) -> None:
        """Fill the cluster's free slots with the first queued jobs whose needs have finished."""
        self.capacity = max(1, slots(self.opts))
        while len(self.pending) < self.capacity:
            job = next((j for j in self.queue if j.needs <= self.finished), None)
            if job is None:
                return
            self.queue.remove(job)
            job.attempts += 1
            ref = self.remote.remote(job.task, _ship(self.store, job), self.env,
                                     _ship_trials(self.store, job, self.fresh))
            self.pending[ref] = (job, time.monotonic())
            self.progress.running = len(self.pending)

    def collect(self, ref: Any) -> None:
        import ray

        job, t0 = self.pending.pop(ref)
        try:
            result: Outcome = ray.get(ref, timeout=60)
        except _lost_errors() as exc:  # the worker process or its node is gone: the task never finished
            self.lost(job, exc)
        except ray.exceptions.RayError as exc:  # the task's code raised: it would raise again
            self.finish(job, job.task.outcome(Kind.ERROR, _reason(getattr(exc, "cause", None) or exc)), job.attempts)
        else:
            self.summary.overhead_s.append(max(0.0, time.monotonic() - t0 - result.seconds))
            self.finish(job, result)
        self.progress.running = len(self.pending)

    def lost(self, job: Job, exc: BaseException) -> None:
        """Its worker died: submitted again while attempts are left, else a failure."""
        if job.attempts > self.opts.max_retries:
            self.finish(job, job.task.outcome(Kind.ERROR, _reason(exc)), job.attempts)
            return
        self.summary.retries.append((job.task, job.attempts, _reason(exc)))
        print(f"[ray] {job.label}: worker lost on attempt {job.attempts} ({_reason(exc)[:120]}); "
              "submitting it again", file=self.progress.stream, flush=True)
        self.queue.insert(0, job)

    def finish(self, job: Job, result: Outcome, attempts: int = 1) -> None:
        """A task is over, with its outcome or the one it had (``attempts``: for the failure list)."""
        if job.task.is_trial:
            self.trial_finished(job, result)
        else:
            self.cell_finished(job.cfg, result, attempts)
        self.finished.add(job.key)

    def cell_finished(self, cfg: CellConfig, result: Outcome, attempts: int) -> None:
        """A cell task's outcome into the summary: its record written here, the one writer."""
        if result.kind.skipped:
            self.summary.skipped.append((cfg, result.message))
            self.progress.skipped += 1
            return
        if result.record is None or result.kind is Kind.ERROR:
            self.cell_failed(cfg, result.message, attempts)
            return
        try:
            self.store.write(result.record, cfg, result.head_state, predictions=result.predictions,
                             model_state=result.model_state)
        except ResultsWriteError as exc:
            self.cell_failed(cfg, str(exc), 1)
            return
        self.failures.clear(cfg)
        self.progress.cell_seconds.append(result.seconds)
        if result.kind is Kind.FAILED:
            self.summary.failed.append((cfg, result.message or "failed"))
            self.progress.failed += 1
        else:
            self.summary.written.append(cfg)
            self.progress.done += 1

    def cell_failed(self, cfg: CellConfig, reason: str, attempts: int) -> None:
        self.summary.failed.append((cfg, reason))
        self.failures.add(cfg, reason, engine="ray", attempts=attempts)
        self.progress.failed += 1

    def trial_finished(self, job: Job, result: Outcome) -> None:
        """Keep a trial task's summary (not a failed one) where the pytest path keeps it; its cell is shipped it.
        A trial that left nothing to keep, its cell runs (as the pytest path's cell runs a trial not kept)."""
        reason = result.message or result.kind.value
        if job.task.keeps(result) and result.record is not None:
            try:
                self.store.write_trial(job.cfg, result.record)
            except ResultsWriteError as exc:
                reason = str(exc)
            else:
                if self.fresh is not None:
                    self.fresh.add(job.task.trial_hash)
                self.summary.trials_kept.append((job.cfg, job.task.lr))
                self.progress.cell_seconds.append(result.seconds)
                self.progress.done += 1
                return
        self.summary.trials_not_kept.append((job.cfg, job.task.lr, reason))
        print(f"[ray] {job.label}: not kept ({reason[:200]}); its cell runs it", file=self.progress.stream,
              flush=True)
        self.progress.done += 1  # the task is over; its cell is what may fail

    def stop(self) -> None:
        """The run's end: when interrupted or out of time, what finished meanwhile kept, the rest cancelled (a
        cancelled trial's cell is queued: it is the one listed)."""
        import ray

        if self.pending:
            ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
            for ref in ready:
                self.collect(ref)
        cancelled = [job for job, _ in self.pending.values()]
        for ref in list(self.pending):
            ray.cancel(ref, force=True)
        self.pending.clear()
        cancelled += self.queue
        self.summary.cancelled += list({j.cfg.config_hash: j.cfg for j in cancelled}.values())
        self.progress.running, self.progress.cancelled = 0, len(cancelled)
        self.progress.show(self.capacity, force=True)
