"""A grid made ready for an engine: data identities filled in, stored records reused, a tuned cell split into
its trials and itself, and the order in which tasks that others need (LP before LP-FT, trials before their
cell) run first.

:class:`Task` is what one engine task runs, a cell or one trial of a tuned cell: the one place that tells the
two apart (its key, label, which ``runner`` function attempts it, what counts as its result). The engines ask
it; they branch on it only where a trial's end means something else than a cell's (a trial not kept is run
by its cell, so it is reported, not a failure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome, failure, with_data_id, with_precision


@dataclass(frozen=True)
class Task:
    """A cell (``lr`` None), or one learning rate of a tuned cell run as a task of its own
    (``training.tuning.run_trial_or_reuse``; :meth:`of_trial`)."""

    cfg: CellConfig
    lr: float | None = None
    trial_hash: str = ""

    @classmethod
    def of_trial(cls, cfg: CellConfig, lr: float) -> Task:
        from medft_bench.training.tuning import trial_hash

        return cls(cfg, lr, trial_hash(cfg, lr))

    @property
    def is_trial(self) -> bool:
        return self.lr is not None

    @property
    def own_hash(self) -> str:
        """The hash that names this task's result: a trial's, else the cell's configuration hash."""
        return self.trial_hash or self.cfg.config_hash

    @property
    def key(self) -> str:
        """Unique in a run: the cell's configuration hash; a trial's after its cell's."""
        return f"{self.cfg.config_hash}/{self.trial_hash}" if self.is_trial else self.cfg.config_hash

    @property
    def label(self) -> str:
        return self.outcome(Kind.NOT_RUN).label  # the runner's words for a cell or a trial

    def attempt(self, env: RunEnv) -> Outcome:
        """Reuse or run it, as the pytest path does (``runner.attempt``, ``runner.attempt_trial``)."""
        from medft_bench.runner import attempt, attempt_trial

        return attempt(self.cfg, env) if self.lr is None else attempt_trial(self.cfg, self.lr, env)

    def outcome(self, kind: Kind, message: str = "", **more: Any) -> Outcome:
        """An outcome it had without an attempt's (not run, its worker lost, its task raised)."""
        return Outcome(kind, self.cfg, message=message, lr=self.lr, **more)

    def keeps(self, outcome: Outcome) -> bool:
        """Whether ``outcome`` (not a skipped one) left what this task is for: a cell, its record (ok, diverged
        or failed); a trial, a summary its cell chooses among (a failed trial is not kept: its cell runs it)."""
        return outcome.kind.has_result or (outcome.kind is Kind.FAILED and not self.is_trial)


@dataclass
class Job:
    """A task in a run. ``needs``: keys of tasks in this run whose results it uses (it is submitted after they
    finish, however they end); ``reuses``: the cells whose stored record and head are shipped with it when they
    exist; ``trials``: a tuned cell's trials, those kept shipped with it (a trial not kept, the cell runs
    itself)."""

    task: Task
    needs: set[str] = field(default_factory=set)
    reuses: tuple[CellConfig, ...] = ()
    attempts: int = 0
    trials: tuple[Task, ...] = ()

    @property
    def cfg(self) -> CellConfig:
        return self.task.cfg

    @property
    def key(self) -> str:
        return self.task.key

    @property
    def label(self) -> str:
        return self.task.label


@dataclass
class Plan:
    jobs: list[Job]  # in submission order
    reused: list[CellConfig]
    skipped: list[tuple[CellConfig, str]]
    reused_trials: list[Task] = field(default_factory=list)  # kept by an earlier run: not run again

    @property
    def cells(self) -> int:
        """Cells to compute (``jobs`` also holds trials, and a trial's cell is always in the plan too)."""
        return len({j.cfg.config_hash for j in self.jobs})


def trials_of(cfg: CellConfig) -> tuple[Task, ...]:
    """A tuned cell's trials, one per learning rate of its grid; () for a study cell or one with nothing to tune."""
    if cfg.protocol != "tuned":
        return ()
    from medft_bench.training.tuning import tuning_grid

    return tuple(Task.of_trial(cfg, lr) for lr in tuning_grid(cfg))


def plan_grid(cells: list[CellConfig], env: RunEnv) -> Plan:
    """Which cells to compute, which are reused, which cannot run (no data: skipped, as the pytest path
    skips them). A tuned cell with a learning-rate grid is one task per trial not kept yet (unless ``rerun``),
    then the cell, which chooses among them. Cells another cell reuses go first, so that LP-FT (and its
    trials) finds its LP cell's head; then trials, so that their cells find them done."""
    from medft_bench.strategies.registry import create_strategy

    store, rerun = env.store, env.rerun
    assert store is not None, "a grid is planned against its results store"
    trial_jobs: list[Job] = []
    cell_jobs: list[Job] = []
    plan = Plan([], [], [])
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
        to_run = []
        for trial in trials:
            if not rerun and store.read_trial(cfg, trial.trial_hash) is not None:
                plan.reused_trials.append(trial)
            else:
                to_run.append(Job(trial, reuses=reuses))
        trial_jobs += to_run
        cell_jobs.append(Job(Task(cfg), {j.key for j in to_run}, reuses=reuses, trials=trials))
    running = {c.cfg.config_hash for c in cell_jobs}
    for job in trial_jobs + cell_jobs:
        job.needs |= {c.config_hash for c in job.reuses if c.config_hash in running}
    needed = set().union(*(j.needs for j in trial_jobs + cell_jobs))
    # Needed cells, then trials, then the grid's order.
    plan.jobs = [j for j in cell_jobs if j.key in needed] + trial_jobs + [j for j in cell_jobs if j.key not in needed]
    return plan
