"""The tuned protocol: one cell as a sweep of learning rates, the choice made on validation.

Each trial trains the strategy on the training split at one learning rate (the settings' ``lr``; a strategy's
other rates follow it, e.g. LP-FT's stage 2 at lr x 0.1) and is scored on the validation split by the engine's
checkpoint key (:func:`medft_bench.metrics.selection_key`). The best trial's model is kept in memory and is
the only one evaluated on the test split, once. Ties keep the lower learning rate.

Trials share what does not depend on the learning rate: the data (loaded once), the backbone (built or loaded
once, each trial starting from a copy of it and from the same random state) and the frozen features of that
starting backbone. A finished trial (ok or diverged) is kept as a small JSON file next to the cell's record,
keyed by its own hash: an interrupted tuning resumes after it. When the chosen trial finished in an earlier
process its model is not in memory; it is trained again (same seed, same starting state) and the record says
``model: retrained``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.io import json_safe
from medft_bench.metrics import selection_key, tie_break_metric
from medft_bench.run_env import RunEnv
from medft_bench.strategies.registry import create_strategy
from medft_bench.training.context import CellContext
from medft_bench.training.engine import Diverged, Trainer, build_context, preparation_s, train_cell
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
    strategy: Any
    runner: Trainer


def key_of(summary: dict[str, Any]) -> tuple[float, ...]:
    """A trial's selection key (JSON keeps a missing metric's -inf as null)."""
    return tuple(-math.inf if v is None else float(v) for v in summary["key"] or (None, None))


def _monitor(ctx: CellContext) -> str:
    from medft_bench.metrics import primary_metric

    return ctx.settings.monitor if ctx.settings.monitor != "auto" else primary_metric(ctx.data.task)


class _Sweep:
    """The shared state of one tuned cell's trials."""

    def __init__(self, cfg: CellConfig, ctx: CellContext, progress: bool | str | None) -> None:
        self.cfg, self.base, self.progress = cfg, ctx, progress
        self.rng = _rng_state()  # every trial starts from the random state the backbone was built with
        self.features: dict[str, torch.Tensor] = {}  # the starting backbone's frozen features

    def run(self, lr: float) -> _Trial:
        """Train one trial at ``lr`` and score it on validation; the test split is not touched."""
        cfg, base = self.cfg, self.base
        _set_rng_state(self.rng)
        ctx = replace(base, settings=replace(base.settings, lr=lr), backbone=copy.deepcopy(base.backbone),
                      epoch_generator=None, feature_cache=None, head_init=dict(base.head_init), _initial=None)
        strategy = create_strategy(cfg.strategy, **cfg.params())
        t0 = time.perf_counter()
        strategy.setup(ctx)
        total_epochs = sum(st.epochs for st in strategy.stages(ctx))
        runner = Trainer(ctx, strategy, EpochProgress(f"{cfg.cell_id} lr={lr:g}", total_epochs, self.progress),
                         shared_features=self.features)
        status, error, val = "ok", None, None
        with runner.progress:
            try:
                runner.train()
                val = runner.evaluate("val")
            except Diverged as exc:
                status, error = "diverged", str(exc)
            except (MedftError, KeyboardInterrupt):
                raise
            except Exception as exc:  # the cell fails with it; the trial is run again next time
                status, error = "failed", f"{type(exc).__name__}: {exc}"
        sync_device(ctx.device)
        t = runner.measured
        summary = {
            "trial_hash": trial_hash(cfg, lr), "lr": lr, "status": status, "error": error, "val": val,
            "key": list(selection_key(val, runner.monitor)) if val is not None else None,
            "monitor": runner.monitor, "epochs_run": len(t.trained_epochs),
            "best_epoch": t.best_epoch, "wall_s": time.perf_counter() - t0, "train_s": t.training_s,
            **{f"tracked_{k}": getattr(t, k) for k in _SUMMED},
            "feature_cache": runner.cache.report(),
            "epochs": t.epochs,
        }
        return _Trial(json_safe(summary), ctx, strategy, runner)


def _no_grid_note(cfg: CellConfig) -> str:
    return (f"{cfg.strategy} has no learning rate to tune (a solved head or no training): it runs exactly as "
            "under the study's protocol")


def _trial_lock(store: Store | None, cfg: CellConfig, lr: float) -> contextlib.AbstractContextManager[Any]:
    return store.claim(cfg, trial_hash(cfg, lr)) if store is not None else contextlib.nullcontext()


def run_trial(cfg: CellConfig, lr: float, env: RunEnv) -> dict[str, Any]:
    """One trial of a tuned cell as a task of its own (a pytest-xdist worker, a cluster task): trained at
    ``lr`` from the cell's starting point, scored on validation, kept in ``store``. The cell then finds it
    done; the test split is not touched. Returns the trial's summary (``resumed``: it was already kept); a
    failed trial is not kept (the cell runs it again and fails with it)."""
    th = trial_hash(cfg, _check_trial(cfg, lr))
    store = env.store
    if store is None:
        raise MedftError(f"{cfg.cell_id} lr={lr:g}: a trial task needs a results store to keep its trial")
    with store.claim(cfg, th):
        if not env.rerun and (done := store.read_trial(cfg, th)) is not None:
            return {**done, "resumed": True}
        summary = compute_trial(cfg, lr, env)
        if summary["status"] != "failed":
            store.write_trial(cfg, summary)
    return {**summary, "resumed": False}


def _check_trial(cfg: CellConfig, lr: float) -> float:
    grid = tuning_grid(cfg)
    if cfg.protocol != "tuned" or lr not in grid:
        raise MedftError(f"{cfg.cell_id}: {lr:g} is not a learning rate of this cell's tuning grid "
                         f"({', '.join(f'{v:g}' for v in grid) or 'none: nothing to tune'})")
    return lr


def compute_trial(cfg: CellConfig, lr: float, env: RunEnv) -> dict[str, Any]:
    """Train one trial (``cfg.data_id`` filled in) and return its summary, neither locked nor kept: the
    caller keeps it (:func:`run_trial`, or a cluster driver through ``ResultStore.write_trial``) unless its
    status is ``failed``. ``env.store`` serves the records the strategy reuses (LP-FT's probe)."""
    _check_trial(cfg, lr)
    base, _ = build_context(cfg, env)
    return _Sweep(cfg, base, env.progress).run(lr).summary


def tune_cell(cfg: CellConfig, env: RunEnv | None = None) -> CellRun:
    """Run a tuned cell: every trial of its grid (finished ones kept in ``env.store`` are not run again, unless
    ``env.retrain_trials``), the best on validation chosen, its model evaluated on test once. The record's
    ``costs`` cover every trial; ``tuning`` lists them."""
    if cfg.protocol != "tuned":
        raise MedftError(f"{cfg.cell_id}: tune_cell needs protocol 'tuned', got {cfg.protocol!r}")
    env = env or RunEnv()
    store, rerun = env.store, env.retrain_trials
    grid = tuning_grid(cfg)
    if not grid:
        return train_cell(cfg, env, tuning={"grid": [], "trials": [], "chosen_lr": None, "model": "single run",
                                            "note": _no_grid_note(cfg)})
    started = datetime.now(timezone.utc)
    base, _ = build_context(cfg, env)
    if base.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(base.device)
    sweep = _Sweep(cfg, base, env.progress)
    summaries: list[dict[str, Any]] = []
    best: _Trial | None = None  # the best trial run in this process, with its model
    last: _Trial | None = None  # the last trial run in this process (describes a cell without an ok trial)
    for lr in grid:
        # Under the trial's lock: a trial task running it elsewhere (``run_trial``) finishes it first.
        with _trial_lock(store, cfg, lr):
            done = None if rerun or store is None else store.read_trial(cfg, trial_hash(cfg, lr))
            if done is None:
                trial = sweep.run(lr)
                if store is not None and trial.summary["status"] != "failed":
                    store.write_trial(cfg, trial.summary)
        if done is not None:
            summaries.append({**done, "resumed": True})
            continue
        summaries.append({**trial.summary, "resumed": False})
        if trial.summary["status"] == "ok" and (best is None or key_of(trial.summary) > key_of(best.summary)):
            best = trial  # the previous best's model is dropped here: one extra model in memory at most
        last = trial if best is None else None  # needed only while no trial is ok

    failed = [s for s in summaries if s["status"] == "failed"]
    ok = [s for s in summaries if s["status"] == "ok"]
    # Ties keep the lower learning rate: the grid is ascending and max() keeps the first of equal keys.
    chosen = max(ok, key=key_of) if ok else None
    status, error, metrics, diverged_epoch, model, retrain_s = "ok", None, None, None, None, None
    final = best or last
    if failed:
        status, error = "failed", "; ".join(f"trial lr={s['lr']:g}: {s['error']}" for s in failed)
    elif chosen is None:
        status = "diverged"
        error = "every trial diverged (" + ", ".join(f"lr={s['lr']:g}" for s in summaries) + ")"
        diverged_epoch = min(s["epochs_run"] for s in summaries)
    elif best is not None and best.summary["trial_hash"] == chosen["trial_hash"]:
        model = "kept"
    else:  # the chosen trial finished in an earlier process: train it again from the same start
        final = sweep.run(chosen["lr"])
        model, retrain_s = "retrained", final.summary["wall_s"]
        if final.summary["status"] != "ok":
            status, error = "failed", f"retraining the chosen trial lr={chosen['lr']:g}: {final.summary['error']}"
    test_eval_s = 0.0
    if status == "ok" and final is not None and final.runner is not None:
        runner = final.runner
        before = runner.measured.eval_s
        # The test split, once, for the chosen trial's model; validation metrics are that model's.
        metrics = {"val": final.summary["val"], "test": runner.evaluate("test")}
        test_eval_s = runner.measured.eval_s - before
    if final is not None:
        ctx, strategy, runner = final.ctx, final.strategy, final.runner
    else:  # every trial was resumed and none is ok: the record describes the cell as configured
        ctx, strategy, runner = base, create_strategy(cfg.strategy, **cfg.params()), None
    monitor = runner.monitor if runner is not None else _monitor(base)
    measured = copy.copy(runner.measured) if runner is not None else Measurements()
    for k in _SUMMED:  # the whole sweep's cost, each trial counted once, as it ran (not a retraining)
        setattr(measured, k, sum(s[f"tracked_{k}"] for s in summaries))
    measured.probe_s += preparation_s(base)  # done once, before the first trial
    measured.eval_s += test_eval_s
    measured.feature_cache = runner.cache.report() if runner is not None else None
    tuning = {
        "grid": list(grid), "chosen_lr": chosen["lr"] if chosen else None,
        "chosen_trial": chosen["trial_hash"] if chosen else None, "model": model,
        "selection": f"validation {monitor} of each trial's kept checkpoint (ties: validation "
                     f"{tie_break_metric(monitor)}, then the lower learning rate); the test split evaluated "
                     "once, for the chosen trial",
        "total_train_s": measured.training_s,
        "retrain_s": retrain_s,
        "shared": "data loaded once; backbone built once, each trial from a copy and the same random state; "
                  "frozen features of the starting backbone extracted once",
        "trials": [{**{k: s[k] for k in ("trial_hash", "lr", "status", "error", "val", "key", "epochs_run",
                                         "best_epoch", "train_s", "wall_s", "resumed", "feature_cache")},
                    "eval_s": s["tracked_eval_s"]} for s in summaries],
    }
    return CellRun(cfg=cfg, ctx=ctx, strategy=strategy, measured=measured, metrics=metrics, status=status,
                   error=error, diverged_epoch=diverged_epoch, started=started,
                   finished=datetime.now(timezone.utc), monitor=monitor, tuning=tuning,
                   scores=dict(runner.latest_scores) if status == "ok" and runner is not None else None)
