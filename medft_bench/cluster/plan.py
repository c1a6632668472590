"""A grid made ready for an engine: data identities filled in, stored records reused, a tuned cell split into
its trials and itself, and the order in which tasks that others need (LP before LP-FT, trials before their
cell) run first."""

from __future__ import annotations

from dataclasses import dataclass, field

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.run_env import RunEnv
from medft_bench.runner import failure, with_data_id, with_precision


@dataclass(frozen=True)
class Trial:
    """One learning rate of a tuned cell, run as a task of its own (``training.tuning.compute_trial``)."""

    cfg: CellConfig
    lr: float
    trial_hash: str

    @property
    def label(self) -> str:
        return f"{self.cfg.cell_id} lr={self.lr:g}"


@dataclass
class Job:
    """One task: a cell, or one trial of a tuned cell (``trial``). ``needs``: keys of tasks in this run whose
    results it uses (it is submitted after they finish, however they end); ``reuses``: the cells whose stored
    record and head are shipped with it when they exist; ``trials``: a tuned cell's trials, those kept
    shipped with it (a trial not kept, the cell runs itself)."""

    cfg: CellConfig
    needs: set[str] = field(default_factory=set)
    reuses: tuple[CellConfig, ...] = ()
    attempts: int = 0
    trial: Trial | None = None
    trials: tuple[Trial, ...] = ()

    @property
    def key(self) -> str:
        return self.cfg.config_hash if self.trial is None else f"{self.cfg.config_hash}/{self.trial.trial_hash}"

    @property
    def label(self) -> str:
        return self.cfg.cell_id if self.trial is None else self.trial.label


@dataclass
class Plan:
    jobs: list[Job]  # in submission order
    reused: list[CellConfig]
    skipped: list[tuple[CellConfig, str]]
    reused_trials: list[Trial] = field(default_factory=list)  # kept by an earlier run: not run again

    @property
    def cells(self) -> int:
        """Cells to compute (``jobs`` also holds trials)."""
        return sum(j.trial is None for j in self.jobs)


def trials_of(cfg: CellConfig) -> tuple[Trial, ...]:
    """A tuned cell's trials, one per learning rate of its grid; () for a study cell or one with nothing to tune."""
    if cfg.protocol != "tuned":
        return ()
    from medft_bench.training.tuning import trial_hash, tuning_grid

    return tuple(Trial(cfg, lr, trial_hash(cfg, lr)) for lr in tuning_grid(cfg))


def plan_grid(cells: list[CellConfig], env: RunEnv) -> Plan:
    """Which cells to compute, which are reused, which cannot run (no data: skipped, as the pytest path
    skips them). A tuned cell with a learning-rate grid is one task per trial not kept yet (unless ``rerun``),
    then the cell, which chooses among them. Cells another cell reuses go first, so that LP-FT (and its
    trials) finds its LP cell's head; then trials, so that their cells find them done."""
    from medft_bench.strategies.registry import create_strategy

    store, rerun = env.store, env.rerun
    assert store is not None, "a grid is planned against its results store"
    jobs: list[Job] = []
    plan = Plan(jobs, [], [])
    seen: set[str] = set()
    for cfg in cells:
        try:
            cfg = with_data_id(cfg, env)
        except MedftError as exc:
            skipped = failure(cfg, exc)  # what the error means is the runner's to say (a missing file: skipped)
            if not skipped.kind.skipped:
                raise
            plan.skipped.append((cfg, skipped.message))
            continue
        # The driver's device decides "auto"'s precision; a worker on another kind refuses the cell (engine).
        cfg = with_precision(cfg)
        if cfg.config_hash in seen:
            continue
        seen.add(cfg.config_hash)
        if not rerun and store.lookup(cfg) is not None:
            plan.reused.append(cfg)
            continue
        reuses = create_strategy(cfg.strategy, **cfg.params()).reused_cells(cfg)
        trials = trials_of(cfg)
        for trial in trials:
            if not rerun and store.read_trial(cfg, trial.trial_hash) is not None:
                plan.reused_trials.append(trial)
            else:
                jobs.append(Job(cfg, reuses=reuses, trial=trial))
        jobs.append(Job(cfg, reuses=reuses, trials=trials))
    running = {j.key for j in jobs}
    for job in jobs:
        job.needs = {c.config_hash for c in job.reuses if c.config_hash in running}
        if job.trial is None:
            job.needs |= {f"{job.cfg.config_hash}/{t.trial_hash}" for t in job.trials} & running
    needed = set().union(*(j.needs for j in jobs)) if jobs else set()
    # Stable: needed cells, then trials, then the grid's order.
    jobs.sort(key=lambda j: 1 if j.trial is not None else 0 if j.key in needed else 2)
    return plan
