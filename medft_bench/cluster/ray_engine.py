"""The grid on a Ray cluster: one Ray task per cell (and per trial of a tuned cell), the driver the one writer.

Each cell is a task declaring its resources (a GPU when the tier needs one), so Ray packs cells onto the
cluster. Workers return the record and head (:mod:`medft_bench.cluster.worker`); the driver writes them
through the result store as they arrive, so an interrupted driver keeps every finished cell. A task whose
worker died (crash, OOM kill, node lost) is submitted again, ``max_retries`` times at most (by the driver
rather than Ray's own ``max_retries``, so that the run can say which cells were retried and why); then the
cell goes on the failure list (:mod:`medft_bench.cluster.failures`). An exception raised by the cell's
code is not retried: it would raise again. The driver submits at most as many cells as the cluster can run at
once, so that "running" means running, and a cell that reuses another (LP-FT, LP) is submitted after it.

A tuned cell with a learning-rate grid is one task per trial, then the cell's own task: each trial task returns
its summary, which the driver keeps (``ResultStore.write_trial``, the file the pytest path keeps); the cell's
task, submitted once its trials have finished, gets the kept trials shipped and only chooses among them,
retrains the chosen one and evaluates it on test. A lost trial task is submitted again alone; trials kept by
an earlier run are not run again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import Job, plan_grid
from medft_bench.cluster.progress import Progress
from medft_bench.cluster.worker import EXIT_ONCE_ENV, Shipped, run_task
from medft_bench.config import CellConfig
from medft_bench.errors import MedftError, ResultsWriteError
from medft_bench.results.store import ResultStore, Store
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome

POLL_S = 1.0  # every wait is bounded: Ctrl-C, the time limit and progress are looked at this often
# Sent to the workers (a cluster started elsewhere does not have the driver's environment).
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "TORCH_HOME", "MEDFT_OFFLINE", "MEDFT_CACHE_DIR", "MEDFT_DATA_ROOT",
                 "MEDFT_FEATURE_CACHE", EXIT_ONCE_ENV)


@dataclass
class RayOptions:
    address: str = "local"  # "local": start a Ray instance on this machine; "auto" or ray://host:port: join
    num_cpus: int | None = None  # a local instance's CPUs (None: Ray's default, all of them)
    cpus_per_cell: float = 1.0
    gpus_per_cell: float = 0.0
    max_retries: int = 2  # a worker lost (crash, OOM kill, node gone) is retried this many times
    timeout_s: float | None = None  # the whole run's time limit: cells still out are cancelled


@dataclass
class GridSummary:
    written: list[CellConfig] = field(default_factory=list)
    reused: list[CellConfig] = field(default_factory=list)
    skipped: list[tuple[CellConfig, str]] = field(default_factory=list)
    failed: list[tuple[CellConfig, str]] = field(default_factory=list)  # a failed record, or none (the reason)
    cancelled: list[CellConfig] = field(default_factory=list)
    retries: list[tuple[CellConfig, int, str]] = field(default_factory=list)  # (cell, attempt lost, why)
    trials_kept: list[tuple[CellConfig, float]] = field(default_factory=list)  # trial tasks kept by this run
    trials_reused: int = 0  # trials kept by an earlier run
    # Trial tasks that left nothing to keep (failed, worker lost after its retries, not written): their cell
    # runs them itself, and fails with a failed one.
    trials_not_kept: list[tuple[CellConfig, float, str]] = field(default_factory=list)
    trial_retries: list[tuple[CellConfig, float, int, str]] = field(default_factory=list)  # (cell, lr, attempt, why)
    overhead_s: list[float] = field(default_factory=list)  # per cell: round trip minus the worker's own seconds
    interrupted: bool = False
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed or self.cancelled or self.interrupted or self.timed_out)


def _lost_errors() -> tuple[type[BaseException], ...]:
    import ray.exceptions as rex

    names = ("WorkerCrashedError", "NodeDiedError", "OutOfMemoryError", "ObjectLostError", "LocalRayletDiedError",
             "RaySystemError", "ActorUnavailableError")
    return tuple(getattr(rex, n) for n in names if hasattr(rex, n))


def _ray_cell(cfg: CellConfig, shipped: list[Shipped], env: RunEnv, lr: float | None = None,
              trials: list[dict[str, Any]] | None = None) -> Outcome:
    return run_task(cfg, shipped, env, lr=lr, trials=trials)


def _ship(store: Store, job: Job) -> list[Shipped]:
    out = []
    for cfg in job.reuses:
        record = store.lookup(cfg)
        if record is not None:
            out.append(Shipped(cfg.config_hash, record, store.load_head(cfg)))
    return out


def _ship_trials(store: Store, job: Job, fresh: set[str] | None) -> list[dict[str, Any]]:
    """A tuned cell's kept trials (with ``--rerun``, ``fresh``: only those this run kept)."""
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
    summary = GridSummary(reused=plan.reused, skipped=list(plan.skipped))
    failures = FailureLog(store.root)
    progress = Progress(total=len(plan.jobs) + len(plan.reused) + len(plan.skipped), engine="ray",
                        **({"stream": stream} if stream is not None else {}))
    summary.trials_reused = len(plan.reused_trials)
    progress.reused, progress.skipped = len(plan.reused), len(plan.skipped)
    if not plan.jobs:
        progress.show(0, force=True)
        return summary
    started = connect(opts)
    try:
        capacity = slots(opts)
        if capacity < 1:
            have = ray.cluster_resources()
            raise MedftError(f"the Ray cluster cannot run one cell: each needs {opts.cpus_per_cell:g} CPU and "
                             f"{opts.gpus_per_cell:g} GPU, the cluster has {have.get('CPU', 0):g} CPU and "
                             f"{have.get('GPU', 0):g} GPU (--cpus-per-cell, --gpus-per-cell; a CPU-only "
                             "cluster runs a gpu tier with --allow-cpu)")
        env = replace(env, threads=max(1, int(opts.cpus_per_cell)))
        # Per task, not per ray.init: the driver may join a Ray instance started before with other variables.
        env_vars = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        remote = ray.remote(_ray_cell).options(num_cpus=opts.cpus_per_cell, num_gpus=opts.gpus_per_cell,
                                               max_retries=0, retry_exceptions=False,
                                               **({"runtime_env": {"env_vars": env_vars}} if env_vars else {}))
        _drive(plan.jobs, remote, env, store, failures, summary, progress, opts)
    finally:
        if started:
            ray.shutdown()
    return summary


def _drive(queue: list[Job], remote: Any, env: RunEnv, store: ResultStore, failures: FailureLog,
           summary: GridSummary, progress: Progress, opts: RayOptions) -> None:
    import ray

    lost = _lost_errors()
    pending: dict[Any, tuple[Job, float]] = {}  # object ref -> (job, submitted at)
    finished: set[str] = set()  # job keys
    fresh: set[str] | None = set() if env.rerun else None  # with rerun: trial hashes kept by this run
    deadline = None if opts.timeout_s is None else time.monotonic() + opts.timeout_s
    capacity = slots(opts)

    def submit() -> None:
        nonlocal capacity
        capacity = max(1, slots(opts))
        while len(pending) < capacity:
            job = next((j for j in queue if j.needs <= finished), None)
            if job is None:
                return
            queue.remove(job)
            job.attempts += 1
            lr = job.trial.lr if job.trial is not None else None
            trials = _ship_trials(store, job, fresh) if job.trials else None
            pending[remote.remote(job.cfg, _ship(store, job), env, lr, trials)] = (job, time.monotonic())
            progress.running = len(pending)

    def collect(ref: Any) -> None:
        job, t0 = pending.pop(ref)
        cfg = job.cfg
        try:
            result: Outcome = ray.get(ref, timeout=60)
        except lost as exc:  # the worker process or its node is gone: the task never finished
            if job.attempts <= opts.max_retries:
                if job.trial is None:
                    summary.retries.append((cfg, job.attempts, _reason(exc)))
                else:
                    summary.trial_retries.append((cfg, job.trial.lr, job.attempts, _reason(exc)))
                print(f"[ray] {job.label}: worker lost on attempt {job.attempts} ({_reason(exc)[:120]}); "
                      "submitting it again", file=progress.stream, flush=True)
                queue.insert(0, job)
                progress.running = len(pending)
                return
            _fail(job, _reason(exc), job.attempts)
        except ray.exceptions.RayError as exc:  # the task's code raised: it would raise again
            _fail(job, _reason(getattr(exc, "cause", None) or exc), job.attempts)
        else:
            summary.overhead_s.append(max(0.0, time.monotonic() - t0 - result.seconds))
            if job.trial is not None:
                _handle_trial(job, result, store, summary, progress, fresh)
            else:
                _handle(cfg, result, store, failures, summary, progress)
        finished.add(job.key)
        progress.running = len(pending)

    def _fail(job: Job, reason: str, attempts: int) -> None:
        if job.trial is not None:  # its cell runs it (as the pytest path's cell runs a trial not kept)
            _trial_not_kept(job, reason, summary, progress)
            return
        cfg = job.cfg
        summary.failed.append((cfg, reason))
        failures.add(cfg, reason, engine="ray", attempts=attempts)
        progress.failed += 1

    try:
        submit()
        while pending:
            if deadline is not None and time.monotonic() > deadline:
                summary.timed_out = True
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in ready:
                collect(ref)
            submit()
            progress.show(capacity)
    except KeyboardInterrupt:
        summary.interrupted = True
    if pending:  # interrupted or out of time: keep what finished meanwhile, cancel the rest
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
        for ref in ready:
            collect(ref)
        cancelled = [job for job, _ in pending.values()]
        for ref in list(pending):
            ray.cancel(ref, force=True)
        pending.clear()
    else:
        cancelled = []
    cancelled += queue
    summary.cancelled += [j.cfg for j in cancelled if j.trial is None]  # a cell's trials: its cell is listed
    progress.running, progress.cancelled = 0, len(cancelled)
    progress.show(capacity, force=True)


def _handle(cfg: CellConfig, result: Outcome, store: ResultStore, failures: FailureLog, summary: GridSummary,
            progress: Progress) -> None:
    """A cell task's outcome into the summary: its record written here, the one writer."""
    if result.kind.skipped:
        summary.skipped.append((cfg, result.message))
        progress.skipped += 1
        return
    if result.record is None or result.kind is Kind.ERROR:
        summary.failed.append((cfg, result.message))
        failures.add(cfg, result.message, engine="ray", attempts=1)
        progress.failed += 1
        return
    try:
        store.write(result.record, cfg, result.head_state, predictions=result.predictions)
    except ResultsWriteError as exc:
        summary.failed.append((cfg, str(exc)))
        failures.add(cfg, str(exc), engine="ray", attempts=1)
        progress.failed += 1
        return
    failures.clear(cfg)
    progress.cell_seconds.append(result.seconds)
    if result.kind is Kind.FAILED:
        summary.failed.append((cfg, result.message or "failed"))
        progress.failed += 1
    else:
        summary.written.append(cfg)
        progress.done += 1


def _handle_trial(job: Job, result: Outcome, store: ResultStore, summary: GridSummary, progress: Progress,
                  fresh: set[str] | None) -> None:
    """Keep a trial task's summary (not a failed one) where the pytest path keeps it; its cell is shipped it."""
    assert job.trial is not None
    if not result.kind.has_result or result.record is None:  # failed, bad input, skipped: its cell runs it
        _trial_not_kept(job, result.message or result.kind.value, summary, progress)
        return
    try:
        store.write_trial(job.cfg, result.record)
    except ResultsWriteError as exc:
        _trial_not_kept(job, str(exc), summary, progress)
        return
    if fresh is not None:
        fresh.add(job.trial.trial_hash)
    summary.trials_kept.append((job.cfg, job.trial.lr))
    progress.cell_seconds.append(result.seconds)
    progress.done += 1


def _trial_not_kept(job: Job, reason: str, summary: GridSummary, progress: Progress) -> None:
    assert job.trial is not None
    summary.trials_not_kept.append((job.cfg, job.trial.lr, reason))
    print(f"[ray] {job.label}: not kept ({reason[:200]}); its cell runs it", file=progress.stream, flush=True)
    progress.done += 1  # the task is over; its cell is what may fail
