"""The one front door onto the engine used by the CLI, the pytest cases and the cluster workers: reuse, or run
and write. The protocol's sweep returns a typed outcome (``training.outcome.CellRun``); this module makes it a
record.

One verb per layer (the same in :mod:`medft_bench.training.tuning`): :func:`attempt` (a cell) and
:func:`attempt_trial` (one trial of a tuned cell) are the one place that decides what an attempt's end means:
an :class:`Outcome` of one :class:`Kind`. Every front end only translates the kind (pytest: pass, skip, xfail or
fail; the CLI: a line and its exit code; Ray and Slurm: their summaries). :func:`run_or_reuse` and
:func:`run_trial_or_reuse`: the store's result, else computed and stored. :func:`compute_cell`: one cell's
outcome with its record, neither looked up nor written (``training.tuning.sweep``: the cell under its
protocol, the study's one trial or a tuned cell's grid).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.config import CellConfig
from medft_bench.errors import DataError, DatasetNotFoundError, MedftError, NotApplicable, ResultsWriteError
from medft_bench.run_env import RunEnv

if TYPE_CHECKING:
    import torch

    from medft_bench.results.store import Store
    from medft_bench.results.view import RecordView


class Kind(str, Enum):
    """How an attempt at a cell (or a trial) ended. Skipped kinds leave no record and stop nothing: the run goes
    on with the next cell, on every front end."""

    COMPUTED = "computed"  # an ok record (a trial: summary) computed by this attempt
    REUSED = "reused"  # an ok record (a trial: summary) stored before
    DIVERGED = "diverged"  # a diverged record or trial: a result (``reused``: stored before)
    FAILED = "failed"  # a failed record or trial (an error during training): computed again next time
    ERROR = "error"  # no record: bad input found while running (weights, device, changed data), or not written
    NOT_APPLICABLE = "not applicable"  # skipped: the strategy does not apply to this backbone or task
    DATA_MISSING = "data missing"  # skipped: a data file is missing and was not downloaded
    NOT_RUN = "not run"  # interrupted before it ran (a Slurm task's time limit): the next run runs it

    @property
    def skipped(self) -> bool:
        return self in (Kind.NOT_APPLICABLE, Kind.DATA_MISSING)

    @property
    def has_result(self) -> bool:
        """A record (or a trial) that counts: ok or diverged."""
        return self in (Kind.COMPUTED, Kind.REUSED, Kind.DIVERGED)


@dataclass
class Outcome:
    """An attempt at one cell, or at one trial of a tuned cell (``lr``). ``record``: the cell's record (a trial's
    summary); with :attr:`Kind.ERROR`, one computed but not written, if any. ``path``: where it was written (None:
    not written, or a cluster worker's, which its driver writes). ``head_state`` and ``predictions``: the trained
    head (LP-FT reuses it) and the per-image predictions' files, written with the record."""

    kind: Kind
    cfg: CellConfig
    record: dict[str, Any] | None = None
    path: Path | None = None
    reused: bool = False
    message: str = ""  # why it was skipped, the error, or a failed record's error
    lr: float | None = None
    head_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    model_state: dict[str, torch.Tensor] | None = field(default=None, repr=False)  # with RunEnv.save_model
    predictions: dict[str, str] | None = field(default=None, repr=False)
    seconds: float = 0.0
    host: str = field(default_factory=socket.gethostname)

    @property
    def label(self) -> str:
        return self.cfg.cell_id if self.lr is None else f"{self.cfg.cell_id} lr={self.lr:g}"

    @property
    def view(self) -> RecordView:
        """The cell's record, typed (:class:`~medft_bench.results.view.RecordView`); only for a cell's outcome
        with a record (a trial's outcome holds its summary, not a record)."""
        from medft_bench.results.view import RecordView

        if self.record is None or self.lr is not None:
            raise MedftError(f"{self.label}: this outcome ({self.kind.value}) holds no cell record")
        return RecordView(self.record)

    @property
    def status(self) -> str | None:
        """The record's (or trial's) status, when there is one."""
        return None if self.record is None else self.record["status"]


def of_result(cfg: CellConfig, record: dict[str, Any], *, reused: bool, lr: float | None = None,
              **more: Any) -> Outcome:
    """The outcome a record (or a trial's summary, ``lr``) stands for."""
    status = record["status"]
    kind = (Kind.FAILED if status == "failed" else Kind.DIVERGED if status == "diverged"
            else Kind.REUSED if reused else Kind.COMPUTED)
    return Outcome(kind, cfg, record, reused=reused, message=record.get("error") or "", lr=lr, **more)


def attempt(cfg: CellConfig, env: RunEnv) -> Outcome:
    """Reuse or run and write one cell (:func:`run_or_reuse`); what it raised becomes the outcome's kind."""
    return _attempt(cfg, env, None)


def attempt_trial(cfg: CellConfig, lr: float, env: RunEnv) -> Outcome:
    """Reuse or run and keep one trial of a tuned cell (:func:`run_trial_or_reuse`), as :func:`attempt` a cell."""
    return _attempt(cfg, env, lr)


def _attempt(cfg: CellConfig, env: RunEnv, lr: float | None) -> Outcome:
    t0 = time.perf_counter()
    try:
        if lr is None:
            out = run_or_reuse(cfg, env)
        else:
            summary = run_trial_or_reuse(cfg, lr, env)
            resumed = summary.pop("resumed")  # the outcome says it; the summary is what a driver keeps
            out = of_result(cfg, summary, reused=resumed, lr=lr)
    except MedftError as exc:
        out = failure(cfg, exc, lr)
    out.seconds = time.perf_counter() - t0
    return out


def failure(cfg: CellConfig, exc: MedftError, lr: float | None = None) -> Outcome:
    """What an error met while attempting a cell means: the one rule, on every front end. A missing data file
    and a strategy that does not apply skip the cell (the run goes on); any other error leaves no record."""
    if isinstance(exc, DatasetNotFoundError):
        return Outcome(Kind.DATA_MISSING, cfg, message=str(exc), lr=lr)
    if isinstance(exc, NotApplicable):
        return Outcome(Kind.NOT_APPLICABLE, cfg, message=str(exc), lr=lr)
    # A result computed but not stored is kept, to be shown rather than lost.
    record = exc.record if isinstance(exc, ResultsWriteError) else None
    return Outcome(Kind.ERROR, cfg, record, message=str(exc), lr=lr)


def measured_nothing(kinds: Iterable[Kind]) -> bool:
    """Whether a run's outcomes measured nothing that was asked of it: every cell skipped, some for missing data.
    Such a run fails (exit status 1 on every front end): the data is the user's to fix, and a green run without a
    single result would hide it. A run skipped only because its strategies do not apply has its answer."""
    kinds = list(kinds)
    return bool(kinds) and all(k.skipped for k in kinds) and Kind.DATA_MISSING in kinds


def with_data_id(cfg: CellConfig, env: RunEnv | None = None) -> CellConfig:
    """The configuration with its data's identity (part of the hash) filled in."""
    from medft_bench.data.sources import data_identity

    if cfg.data_id:
        return cfg
    env = env or RunEnv()
    return replace(cfg, data_id=data_identity(cfg.dataset, cfg.img_size, synthetic_data=cfg.synthetic,
                                              root=env.data_root, download=env.download,
                                              mirror=env.medmnist_url))


def with_precision(cfg: CellConfig, device: Any = None) -> CellConfig:
    """The configuration with the precision it trains in on ``device`` (part of the hash) filled in."""
    from medft_bench.config import effective_precision
    from medft_bench.training.engine import resolve_device

    if cfg.precision:
        return cfg
    return replace(cfg, precision=effective_precision(cfg.train.amp, resolve_device(device).type))


def resolved(cfg: CellConfig, env: RunEnv) -> CellConfig:
    """The configuration as it is hashed: its data's identity and its precision filled in."""
    return with_precision(with_data_id(cfg, env), env.device)


def _store(env: RunEnv) -> Store:
    if env.store is None:
        raise MedftError("this run has no results store (RunEnv.store): give one, e.g. RunEnv.at(results_dir)")
    return env.store


def run_trial_or_reuse(cfg: CellConfig, lr: float, env: RunEnv) -> dict[str, Any]:
    """One trial of a tuned cell as its own task (``training.tuning.run_trial_or_reuse``): reused when kept, else
    computed and kept next to the cell's record, where the cell's own sweep finds it."""
    from medft_bench.training import tuning

    _store(env)
    return tuning.run_trial_or_reuse(resolved(cfg, env), lr, env)


def run_or_reuse(cfg: CellConfig, env: RunEnv) -> Outcome:
    """Reuse the stored record of this exact configuration on the same data, or run the cell and store its record.

    The data's identity (a MedMNIST file's MD5, a folder dataset's fingerprint) is part of the configuration
    hash: other data (``--data-root`` elsewhere, a re-pointed folder dataset, a changed file) gets a record of
    its own, and the records of the old data stay. Raises what :func:`attempt` turns into an outcome's kind.
    """
    cfg = resolved(cfg, env)
    store = _store(env)
    # A reuse needs no lock (records are renamed into place whole), so a read-only results directory still
    # serves the records it holds; computing takes the lock, and looks again under it.
    if not env.rerun and (record := store.lookup(cfg)) is not None:
        return of_result(cfg, record, reused=True, path=store.record_path(cfg))
    with store.claim(cfg):
        record = store.lookup(cfg)  # with --rerun too: a file it cannot read blocks the cell before any training
        if not env.rerun and record is not None:
            return of_result(cfg, record, reused=True, path=store.record_path(cfg))
        out = compute_cell(cfg, env)
        out.path = store.write(out.record, cfg, out.head_state, predictions=out.predictions,
                               model_state=out.model_state)
    if out.path is not None:  # written here (a cluster worker's goes back to its driver): no copy of it held on
        out.model_state = None
    return out


def compute_cell(cfg: CellConfig, env: RunEnv | None = None) -> Outcome:
    """One cell under its protocol (``training.tuning.sweep``) and its outcome (record, head, predictions),
    neither looked up first nor written: the caller writes it through the store. ``env.store`` serves the
    records a strategy reuses (LP-FT's probe) and keeps a tuned cell's trials as they finish, so that an
    interruption resumes; a cluster worker's is a store of its own (:mod:`medft_bench.cluster.worker`). With
    ``cfg.data_id`` filled in (``run_or_reuse`` always fills it; a direct caller such as a perf script may not),
    a result of other data (the files changed meanwhile) is refused."""
    from medft_bench.data.sources import recorded_identity
    from medft_bench.results import predictions
    from medft_bench.results.environment import code_version, environment
    from medft_bench.results.record import build_record
    from medft_bench.results.store import safe_name
    from medft_bench.training.engine import pinned_threads
    from medft_bench.training.measurements import reset_host_peak
    from medft_bench.training.tuning import sweep  # imported only to compute: a reuse is a lookup

    reset_host_peak()  # the record's peak host memory is this cell's, not the process's so far (every path)
    env = env or RunEnv()
    with pinned_threads(cfg.train.threads):  # also while the record is built: it records the count
        run = sweep(cfg, env)
        record, files = build_record(run.facts(), environment(run.ctx.device), code_version()), None
    if run.scores:
        data = run.ctx.data
        flag = safe_name(("synthetic-" if cfg.synthetic else "") + cfg.dataset)  # never a MedMNIST flag unless real
        record["predictions"], files = predictions.build(
            flag, cfg.img_size, f"seed{cfg.seed}", record["metrics"], run.scores,
            {split: data.split(split).labels.numpy() for split in run.scores})
    if cfg.data_id and recorded_identity(record["data"]) != cfg.data_id:  # never file a result under other data
        raise DataError(f"{cfg.dataset}: the data changed while {cfg.cell_id} ran (files replaced or "
                        "edited); nothing was recorded: run it again")
    return of_result(cfg, record, reused=False, head_state=run.head_state(), predictions=files,
                     model_state=run.model_state() if env.save_model else None)
