"""The one front door onto the engine used by the CLI, the pytest cases and the cluster workers: reuse, or run
and write. The engine returns a typed outcome (``training.outcome.CellRun``); this module makes it a record."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.config import CellConfig
from medft_bench.errors import DataError
from medft_bench.results.store import ResultStore

if TYPE_CHECKING:
    import torch


@dataclass
class CellResult:
    """A cell's record, its trained head's weights (saved next to the record, for LP-FT's reuse) and its
    per-image predictions' files by name (``results.predictions``)."""

    record: dict[str, Any]
    head_state: dict[str, torch.Tensor] | None = None
    predictions: dict[str, str] | None = None


@dataclass
class Outcome:
    record: dict[str, Any]
    path: Path
    reused: bool


def with_data_id(cfg: CellConfig, *, data_root: Any = None, download: bool = True) -> CellConfig:
    """The configuration with its data's identity (part of the hash) filled in."""
    from medft_bench.data.sources import data_identity

    if cfg.data_id:
        return cfg
    return replace(cfg, data_id=data_identity(cfg.dataset, cfg.img_size, synthetic_data=cfg.synthetic,
                                              root=data_root, download=download))


def with_precision(cfg: CellConfig, device: Any = None) -> CellConfig:
    """The configuration with the precision it trains in on ``device`` (part of the hash) filled in."""
    from medft_bench.config import effective_precision
    from medft_bench.training.engine import resolve_device

    if cfg.precision:
        return cfg
    return replace(cfg, precision=effective_precision(cfg.train.amp, resolve_device(device).type))


def run_trial_or_reuse(cfg: CellConfig, lr: float, results_dir: str | Path, *, rerun: bool = False,
                       data_root: Any = None, device: Any = None, progress: bool | None = None,
                       download: bool = True) -> dict[str, Any]:
    """One trial of a tuned cell as its own task (``training.tuning.run_trial``): reused when kept, else run
    and kept next to the cell's record, where the cell's own run finds it."""
    from medft_bench.training.tuning import run_trial

    cfg = with_precision(with_data_id(cfg, data_root=data_root, download=download), device)
    return run_trial(cfg, lr, store=ResultStore(results_dir), data_root=data_root, device=device,
                     progress=progress, download=download, rerun=rerun)


def run_or_reuse(cfg: CellConfig, results_dir: str | Path, *, rerun: bool = False, data_root: Any = None,
                 device: Any = None, progress: bool | str | None = None, download: bool = True,
                 rerun_trials: bool | None = None) -> Outcome:
    """Reuse the stored record of this exact configuration on the same data, or run the cell and store its record.

    The data's identity (a MedMNIST file's MD5, a folder dataset's fingerprint) is part of the configuration
    hash: other data (``--data-root`` elsewhere, a re-pointed folder dataset, a changed file) gets a record of
    its own, and the records of the old data stay. ``rerun_trials`` (default: ``rerun``): whether a tuned cell
    trains its kept trials again; False when this run has just run them as tasks of their own.
    """
    cfg = with_precision(with_data_id(cfg, data_root=data_root, download=download), device)
    store = ResultStore(results_dir)
    # A reuse needs no lock (records are renamed into place whole), so a read-only results directory still
    # serves the records it holds; computing takes the lock, and looks again under it.
    if not rerun and (record := store.lookup(cfg)) is not None:
        return Outcome(record, store.path_for(cfg), True)
    with store.claim(cfg):
        if not rerun and (record := store.lookup(cfg)) is not None:
            return Outcome(record, store.path_for(cfg), True)
        result = compute_cell(cfg, store, data_root=data_root, device=device, progress=progress,
                              download=download, rerun=rerun if rerun_trials is None else rerun_trials)
        path = store.write(result.record, cfg, result.head_state, predictions=result.predictions)
    return Outcome(result.record, path, False)


def compute_cell(cfg: CellConfig, store: Any, *, data_root: Any = None, device: Any = None,
                 progress: bool | None = None, download: bool = True, rerun: bool = False) -> CellResult:
    """Run one cell (``cfg.data_id`` filled in) and return its record and head, not written: the caller writes
    them through the store. ``store`` serves the records a strategy reuses (LP-FT's probe) and a tuned cell's
    trials; a cluster worker passes a store of its own (:mod:`medft_bench.cluster.worker`)."""
    from medft_bench.data.sources import recorded_identity
    from medft_bench.results.record import reset_host_peak

    reset_host_peak()  # the record's peak host memory is this cell's, not the process's so far (every path)
    result = run_cell(cfg, data_root=data_root, device=device, store=store, progress=progress, download=download,
                      rerun=rerun)
    if recorded_identity(result.record["data"]) != cfg.data_id:  # never file a result under other data
        raise DataError(f"{cfg.dataset}: the data changed while {cfg.cell_id} ran (files replaced or "
                        "edited); nothing was recorded: run it again")
    return result


def run_cell(cfg: CellConfig, *, data_root: Any = None, device: Any = None, store: Any = None,
             progress: bool | str | None = None, download: bool = True, rerun: bool = False) -> CellResult:
    """Run one cell under its protocol and return its record and head, neither written nor looked up first:
    the study's (``training.engine.train_cell``) or the tuned one (``training.tuning.tune_cell``: a sweep of
    trials, each kept in ``store`` as it finishes, so that an interruption resumes)."""
    from medft_bench.results import predictions
    from medft_bench.results.record import build_record
    from medft_bench.results.store import safe_name

    # Imported only to compute: a reuse is a lookup.
    if cfg.protocol == "tuned":
        from medft_bench.training.tuning import tune_cell

        run = tune_cell(cfg, data_root=data_root, device=device, store=store, progress=progress,
                        download=download, rerun=rerun)
    else:
        from medft_bench.training.engine import train_cell

        run = train_cell(cfg, data_root=data_root, device=device, store=store, progress=progress,
                         download=download)
    record, files = build_record(run), None
    if run.scores:
        data = run.ctx.data
        flag = safe_name(("synthetic-" if cfg.synthetic else "") + cfg.dataset)  # never a MedMNIST flag unless real
        record["predictions"], files = predictions.build(
            flag, cfg.img_size, f"seed{cfg.seed}", record["metrics"], run.scores,
            {split: data.split(split).labels.numpy() for split in run.scores})
    return CellResult(record, run.head_state(), files)
