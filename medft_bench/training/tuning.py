"""A cell under its protocol, one path for both: a sweep of trials (:func:`sweep`), the choice made on validation.

The study's protocol is a sweep of one trial at the cell's own learning rate whose model is kept (it trains the
built backbone itself); so is a tuned cell whose strategy has no learning rate to tune (LP's solved head, kNN's
vote: :func:`tuning_grid` is empty), and its record says so. A tuned cell sweeps its grid: each trial trains
the strategy on the training split at one learning rate (the settings' ``lr``; a strategy's other rates follow
it, e.g. LP-FT's stage 2 at lr x 0.1) and is scored on the validation split by the engine's checkpoint key
(:func:`medft_bench.metrics.selection_key`). The best trial's model is kept in memory and is the only one
evaluated on the test split, once. Ties keep the lower learning rate. One place each for the setup
(:class:`_Sweep`), how a trial ends (:meth:`_Sweep.trial`: diverged, failed, or bad input raised), a kept
trial's lock, read and keep (:func:`_run_or_reuse`) and the cell's outcome (:func:`_finish`).

Trials share what does not depend on the learning rate: the data (loaded once), the backbone (built or loaded
once; in a sweep of several, each trial starts from a copy of it and from the same random state, and a lone
trial trains it, from the state it was built in) and the frozen features of that starting backbone. A finished
trial (ok or diverged) is kept as a small JSON file next to the cell's record, keyed by its own hash: an
interrupted tuning resumes after it. When the chosen trial finished in an earlier process its model is not in
memory; it is trained again (same seed, same starting state) and the record says ``model: retrained``.

Verbs, here and in :mod:`medft_bench.runner`: *attempt* (an outcome: an error becomes its kind), *run or reuse*
(a result kept in the store, else computed and kept, under its lock), *compute* (a result, neither looked up nor
kept), *sweep* (a cell's trials, the choice, the test split once), *train* (``engine.Trainer``: stages, epochs).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.io import json_safe
from medft_bench.metrics import compute_metrics, selection_key, tie_break_metric
from medft_bench.run_env import RunEnv
from medft_bench.strategies.base import Strategy
from medft_bench.strategies.registry import create_strategy
from medft_bench.training.context import CellContext
from medft_bench.training.engine import Diverged, Trainer, build_context, pinned_threads, preparation_s
from medft_bench.training.measurements import Measurements, sync_device
from medft_bench.training.outcome import CellRun
from medft_bench.training.progress import EpochProgress

if TYPE_CHECKING:
    from medft_bench.results.store import Store

# Summed over trials: the whole sweep is what it costs to use a strategy under this protocol.
_SUMMED = ("train_s", "eval_s", "feature_s", "probe_s", "fit_s", "select_s", "train_images")


def tuning_grid(cfg: CellConfig) -> tuple[float, ...]:
    """The learning rates a tuned cell tries: the cell's ``lr_grid`` when given, else the strategy's own; ()
    when the strategy has no learning rate to tune (LP's solved head, kNN)."""
    own = create_strategy(cfg.strategy, **cfg.params()).tuning_grid()
    return tuple(sorted(set(cfg.lr_grid or own))) if own else ()


def trial_hash(cfg: CellConfig, lr: float) -> str:
    """A trial's identity: the cell's configuration (data included) and its learning rate."""
    blob = json.dumps({"cell": cfg.identity(), "trial_lr": lr}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class _Trial:
    """A trial run in this process: its summary and, while it may be chosen, its model."""

    summary: dict[str, Any]
    ctx: CellContext
    strategy: Strategy
    trainer: Trainer
    metrics: dict[str, Any] | None  # validation's (and test's, for a strategy that only predicts)
    diverged_epoch: int | None = None
    predicted: dict[str, np.ndarray] | None = None  # a strategy that only predicts (kNN): its scores per split

    @property
    def status(self) -> str:
        return self.summary["status"]


def key_of(summary: dict[str, Any]) -> tuple[float, ...]:
    """A trial's selection key (JSON keeps a missing metric's -inf as null)."""
    return tuple(-math.inf if v is None else float(v) for v in summary["key"] or (None, None))


class _Sweep:
    """One cell's setup, done once for all its trials: data, backbone and strategy built (``build_context``), and
    the random state they leave, which every trial starts from. ``copies``: each trial trains a copy of the
    backbone (a sweep of several trials); else the one trial trains the built backbone and strategy."""

    def __init__(self, cfg: CellConfig, env: RunEnv, *, copies: bool) -> None:
        self.cfg, self.progress, self.copies = cfg, env.progress, copies
        self.store, self.retrain = env.store, env.retrain_trials  # a swept grid's kept trials
        self.base, self.strategy = build_context(cfg, env)
        if self.base.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.base.device)
        self.rng = _rng_state()
        self.features: dict[str, torch.Tensor] = {}  # the starting backbone's frozen features

    def trial(self, lr: float | None) -> _Trial:
        """Train one trial at ``lr`` and score it on validation; the test split is not touched. ``lr`` None: the
        cell's own, its one trial, which is the whole cell: its model is evaluated on test too."""
        cfg, base = self.cfg, self.base
        if self.copies:
            _set_rng_state(self.rng)
            ctx = replace(base, backbone=copy.deepcopy(base.backbone), epoch_generator=None, feature_cache=None,
                          head_init=dict(base.head_init), _initial=None)
            strategy = create_strategy(cfg.strategy, **cfg.params())
        else:  # the only trial of this process: the base is not needed again
            ctx, strategy = base, self.strategy
        if lr is not None:
            ctx = replace(ctx, settings=replace(ctx.settings, lr=lr))
        t0 = time.perf_counter()
        strategy.setup(ctx)
        total_epochs = sum(st.epochs for st in strategy.stages(ctx))
        label = cfg.cell_id if lr is None else f"{cfg.cell_id} lr={lr:g}"
        # Trials of a grid share the starting backbone's features; the one trial keeps none beyond its own cache,
        # which frees them before a stage that trains the backbone (LP-FT's stage 2 would otherwise hold them).
        trainer = Trainer(ctx, strategy, EpochProgress(label, total_epochs, self.progress),
                          shared_features=self.features if self.copies else None)
        status, error, metrics, predicted, diverged_epoch = "ok", None, None, None, None
        with trainer.progress:
            try:
                metrics, predicted = _train_or_predict(trainer, test=lr is None)
            except Diverged as exc:
                status, error, diverged_epoch = "diverged", str(exc), exc.epoch
            except (MedftError, KeyboardInterrupt):
                raise
            except Exception as exc:  # recorded, so one crashed cell does not hide the others; run again next time
                status, error = "failed", f"{type(exc).__name__}: {exc}"
        sync_device(ctx.device)
        t, val = trainer.measured, metrics["val"] if metrics else None
        summary = {
            "trial_hash": trial_hash(cfg, ctx.settings.lr), "lr": ctx.settings.lr, "status": status,
            "error": error, "val": val, "key": list(selection_key(val, trainer.monitor)) if val is not None else None,
            "monitor": trainer.monitor, "epochs_run": len(t.trained_epochs),
            "best_epoch": t.best_epoch, "wall_s": time.perf_counter() - t0, "train_s": t.training_s,
            **{f"tracked_{k}": getattr(t, k) for k in _SUMMED},
            "feature_cache": trainer.cache.report(),
            "epochs": t.epochs,
        }
        return _Trial(json_safe(summary), ctx, strategy, trainer, metrics, diverged_epoch, predicted)


def _train_or_predict(trainer: Trainer, *, test: bool) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
    """The trained strategy's metrics on validation (and test, with ``test``). A strategy that only predicts
    (kNN, never swept): its metrics and scores on validation and test, the training features and the vote its
    "training", the evaluated splits' features its evaluation."""
    ctx, measured = trainer.ctx, trainer.measured
    t0 = time.perf_counter()
    predicted = trainer.strategy.predict(ctx)
    if predicted is None:
        trainer.train()
        val = trainer.evaluate("val")
        return ({"val": val, "test": trainer.evaluate("test")} if test else {"val": val}), None
    metrics = {split: compute_metrics(ctx.data.task, ctx.data.split(split).labels.numpy(), p)
               for split, p in predicted.items()}
    seconds = trainer.cache.seconds
    measured.feature_s = seconds.get("train", 0.0)
    measured.eval_s = seconds.get("val", 0.0) + seconds.get("test", 0.0)
    measured.fit_s = max(0.0, time.perf_counter() - t0 - sum(seconds.values()))
    return metrics, dict(predicted)


def _no_grid_note(cfg: CellConfig) -> str:
    return (f"{cfg.strategy} has no learning rate to tune (a solved head or no training): it runs exactly as "
            "under the study's protocol")


def _trial_lock(store: Store | None, cfg: CellConfig, lr: float) -> contextlib.AbstractContextManager[Any]:
    return store.claim(cfg, trial_hash(cfg, lr)) if store is not None else contextlib.nullcontext()


def _run_or_reuse(cfg: CellConfig, lr: float, store: Store | None, rerun: bool,
                  train: Callable[[float], _Trial]) -> tuple[dict[str, Any], _Trial | None]:
    """A trial under its lock (one running it elsewhere finishes it first): the one kept in ``store`` (unless
    ``rerun``; the trial None), else ``train(lr)``'s, kept unless failed (a failed trial is run again next
    time). Its summary says which (``resumed``)."""
    with _trial_lock(store, cfg, lr):
        done = None if rerun or store is None else store.read_trial(cfg, trial_hash(cfg, lr))
        if done is not None:
            return {**done, "resumed": True}, None
        trial = train(lr)
        if store is not None and trial.status != "failed":
            store.write_trial(cfg, trial.summary)
    return {**trial.summary, "resumed": False}, trial


def run_trial_or_reuse(cfg: CellConfig, lr: float, env: RunEnv) -> dict[str, Any]:
    """One trial of a tuned cell as a task of its own (a pytest-xdist worker, a cluster task): trained at
    ``lr`` from the cell's starting point, scored on validation, kept in ``env.store``. The cell then finds it
    done; the test split is not touched. Returns the trial's summary (``resumed``: it was already kept)."""
    _check_trial(cfg, lr)
    if env.store is None:
        raise MedftError(f"{cfg.cell_id} lr={lr:g}: a trial task needs a results store to keep its trial")
    def compute(lr: float) -> _Trial:
        with pinned_threads(cfg.train.threads):
            return _Sweep(cfg, env, copies=False).trial(lr)

    return _run_or_reuse(cfg, lr, env.store, env.rerun, compute)[0]


def _check_trial(cfg: CellConfig, lr: float) -> float:
    grid = tuning_grid(cfg)
    if cfg.protocol != "tuned" or lr not in grid:
        raise MedftError(f"{cfg.cell_id}: {lr:g} is not a learning rate of this cell's tuning grid "
                         f"({', '.join(f'{v:g}' for v in grid) or 'none: nothing to tune'})")
    return lr


def sweep(cfg: CellConfig, env: RunEnv | None = None) -> CellRun:
    """One cell under its protocol, neither looked up nor recorded (``runner.compute_cell`` makes it a record):
    the study's one trial, or a tuned cell's grid (trials kept in ``env.store`` are not run again, unless
    ``env.retrain_trials``), the best on validation chosen, its model evaluated on test once. Bad input
    (unknown names, missing data or weights) raises :class:`MedftError`; a diverged loss or an error during
    training is the outcome's status (``diverged``, ``failed``)."""
    with pinned_threads(cfg.train.threads):
        return _sweep(cfg, env or RunEnv())


def _sweep(cfg: CellConfig, env: RunEnv) -> CellRun:
    grid = tuning_grid(cfg) if cfg.protocol == "tuned" else ()
    started = datetime.now(timezone.utc)
    s = _Sweep(cfg, env, copies=len(grid) > 1)
    if grid:
        kept, summaries, verdict, choice = _tune(s, grid)
    else:  # the study's one trial, or a tuned cell with no learning rate to tune: the same, said so
        kept = s.trial(None)
        summaries, verdict = [kept.summary], (kept.status, kept.summary["error"], kept.diverged_epoch)
        choice = None if cfg.protocol != "tuned" else {"grid": [], "trials": [], "chosen_lr": None,
                                                       "model": "single run", "note": _no_grid_note(cfg)}
    return _finish(s, started, kept, summaries, verdict, choice)


def _tune(s: _Sweep, grid: tuple[float, ...]
          ) -> tuple[_Trial | None, list[dict[str, Any]], tuple[str, str | None, int | None], dict[str, Any]]:
    """Every trial of the grid (those kept in the store not run again, unless ``env.retrain_trials``), then the
    choice: the trial whose model the record describes, every trial's summary, how the cell ended (status,
    error, diverged epoch) and the choice for the ``tuning`` entry."""
    summaries: list[dict[str, Any]] = []
    best: _Trial | None = None  # the best trial run in this process, with its model
    last: _Trial | None = None  # the last trial run in this process (describes a cell without an ok trial)
    for lr in grid:
        summary, trial = _run_or_reuse(s.cfg, lr, s.store, s.retrain, s.trial)
        summaries.append(summary)
        if trial is None:
            continue
        if trial.status == "ok" and (best is None or key_of(trial.summary) > key_of(best.summary)):
            best = trial  # the previous best's model is dropped here: one extra model in memory at most
        last = trial if best is None else None  # needed only while no trial is ok
    failed = [x for x in summaries if x["status"] == "failed"]
    ok = [x for x in summaries if x["status"] == "ok"]
    # Ties keep the lower learning rate: the grid is ascending and max() keeps the first of equal keys.
    chosen = max(ok, key=key_of) if ok else None
    verdict: tuple[str, str | None, int | None] = ("ok", None, None)
    kept, model, retrain_s = best or last, None, None
    if failed:
        verdict = ("failed", "; ".join(f"trial lr={x['lr']:g}: {x['error']}" for x in failed), None)
    elif chosen is None:
        verdict = ("diverged", "every trial diverged (" + ", ".join(f"lr={x['lr']:g}" for x in summaries) + ")",
                   min(x["epochs_run"] for x in summaries))
    elif best is not None and best.summary["trial_hash"] == chosen["trial_hash"]:
        model = "kept"
    else:  # the chosen trial finished in an earlier process: train it again from the same start
        kept = s.trial(chosen["lr"])
        model, retrain_s = "retrained", kept.summary["wall_s"]
        if kept.status != "ok":
            verdict = ("failed", f"retraining the chosen trial lr={chosen['lr']:g}: {kept.summary['error']}", None)
    return kept, summaries, verdict, {"grid": list(grid), "chosen_lr": chosen["lr"] if chosen else None,
                                      "chosen_trial": chosen["trial_hash"] if chosen else None, "model": model,
                                      "retrain_s": retrain_s}


def _finish(s: _Sweep, started: datetime, kept: _Trial | None, summaries: list[dict[str, Any]],
            verdict: tuple[str, str | None, int | None], choice: dict[str, Any] | None) -> CellRun:
    """The cell's outcome, for either protocol: the kept trial's model (none: every trial was resumed and none
    is ok, the cell as configured) evaluated on test once when ok, the whole sweep's cost, the ``tuning`` entry."""
    cfg, (status, error, diverged_epoch) = s.cfg, verdict
    if kept is not None:
        ctx, strategy, trainer = kept.ctx, kept.strategy, kept.trainer
    else:
        ctx, strategy, trainer = s.base, create_strategy(cfg.strategy, **cfg.params()), None
    metrics, scores, test_eval_s = None, None, 0.0
    if status == "ok" and kept is not None:
        metrics = dict(kept.metrics or {})
        if "test" not in metrics:  # the test split, once, for the kept model; validation metrics are its own
            before = kept.trainer.measured.eval_s
            metrics["test"] = kept.trainer.evaluate("test")
            test_eval_s = kept.trainer.measured.eval_s - before
        scores = kept.predicted or dict(kept.trainer.latest_scores)
    measured = copy.copy(trainer.measured) if trainer is not None else Measurements()
    for k in _SUMMED:  # the whole sweep's cost, each trial counted once, as it ran (not a retraining)
        setattr(measured, k, sum(x[f"tracked_{k}"] for x in summaries))
    measured.probe_s += preparation_s(s.base)  # done once, before the first trial
    measured.eval_s += test_eval_s
    measured.feature_cache = trainer.cache.report() if trainer is not None else None
    monitor = trainer.monitor if trainer is not None else s.base.monitor
    tuning = _tuning_entry(choice, summaries, monitor, measured) if choice and choice["grid"] else choice
    return CellRun(cfg=cfg, ctx=ctx, strategy=strategy, measured=measured, metrics=metrics, status=status,
                   error=error, diverged_epoch=diverged_epoch, started=started,
                   finished=datetime.now(timezone.utc), monitor=monitor, tuning=tuning, scores=scores)


def _tuning_entry(choice: dict[str, Any], summaries: list[dict[str, Any]], monitor: str,
                  measured: Measurements) -> dict[str, Any]:
    """A swept cell's ``tuning`` entry: its grid, the choice and how it was made, every trial, the whole cost."""
    return {
        "grid": choice["grid"], "chosen_lr": choice["chosen_lr"], "chosen_trial": choice["chosen_trial"],
        "model": choice["model"],
        "selection": f"validation {monitor} of each trial's kept checkpoint (ties: validation "
                     f"{tie_break_metric(monitor)}, then the lower learning rate); the test split evaluated "
                     "once, for the chosen trial",
        "total_train_s": measured.training_s,
        "retrain_s": choice["retrain_s"],
        "shared": "data loaded once; backbone built once, each trial from a copy and the same random state; "
                  "frozen features of the starting backbone extracted once",
        "trials": [{**{k: x[k] for k in ("trial_hash", "lr", "status", "error", "val", "key", "epochs_run",
                                         "best_epoch", "train_s", "wall_s", "resumed", "feature_cache")},
                    "eval_s": x["tracked_eval_s"]} for x in summaries],
    }
