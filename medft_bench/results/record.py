"""Building and validating the one result record per cell (schema in ``schema.json``)."""

from __future__ import annotations

import functools
import json
import math
import resource
import sys
from dataclasses import asdict
from datetime import datetime
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from medft_bench.errors import RecordError

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.strategies.base import Strategy
    from medft_bench.training.context import CellContext

SCHEMA_VERSION = 1


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(files("medft_bench.results").joinpath("schema.json").read_text())


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    """The schema's validator, where a number is finite: JSON has no NaN or Infinity, but Python's json module
    reads them, and one NaN metric would turn every rank of its case into nan."""
    from jsonschema import Draft202012Validator, validators

    base = Draft202012Validator.TYPE_CHECKER
    checker = base.redefine("number", lambda c, v: base.is_type(v, "number") and math.isfinite(v))
    return validators.extend(Draft202012Validator, type_checker=checker)(schema())


def validate(record: Any, where: str = "record") -> None:
    """Raise :class:`RecordError` naming the first problems when ``record`` does not match the schema."""
    from jsonschema.exceptions import best_match

    # best_match descends into oneOf: "metrics/test/acc: nan is not ...", not the whole metrics object.
    errors = sorted((best_match([e]) for e in _validator().iter_errors(record)),
                    key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        msgs = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:160]}" for e in errors[:3]]
        raise RecordError(f"{where} does not match result schema v{SCHEMA_VERSION}: " + "; ".join(msgs))


def _finite(obj: Any) -> Any:
    """JSON has no NaN: non-finite floats become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


_CELL_PEAK = {"armed": False}  # a fresh high-water mark was started for the cell being computed


def reset_host_peak() -> bool:
    """Start a fresh peak of resident memory for the next cell (Linux: writing 5 to ``/proc/self/clear_refs``
    resets the process's VmHWM to its current RSS). False where the system has no such reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        _CELL_PEAK["armed"] = False
        return False
    _CELL_PEAK["armed"] = True
    return True


def host_peak() -> tuple[float, str]:
    """Peak resident memory in MB and what it covers: ``"cell"`` since :func:`reset_host_peak` (VmHWM; the
    memory the process already held when the cell began is included), else ``"process"`` (ru_maxrss: the
    process's peak so far, which only grows with run order). A reset serves one reading."""
    if _CELL_PEAK["armed"]:
        _CELL_PEAK["armed"] = False
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024, "cell"
        except (OSError, ValueError, IndexError):
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024), "process"


def build_record(*, cfg: CellConfig, ctx: CellContext, strategy: Strategy, tracker: Any,
                 metrics: dict[str, Any] | None, status: str, error: str | None, diverged_epoch: int | None,
                 started: datetime, finished: datetime, majority: dict[str, float], monitor: str,
                 env: dict[str, Any], tuning: dict[str, Any] | None = None) -> dict[str, Any]:
    import torch

    peak_mb, peak_scope = host_peak()

    from medft_bench.gates import weak_result
    from medft_bench.metrics import primary_metric
    from medft_bench.results.environment import code_version

    dev = ctx.device
    gpu = dev.type == "cuda"
    model = ctx.model
    data = ctx.data
    trained_epochs = [e for e in tracker.epochs if "train_loss" in e]  # not solved/reused stages, not starts
    train_s = tracker.train_s + tracker.feature_s + tracker.probe_s + tracker.fit_s + strategy.reused_train_s
    best_epoch = None
    if tracker.best:
        last = list(tracker.best.values())[-1]
        best_epoch = last["epoch"]
    record = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cfg.cell_id,
        "config_hash": cfg.config_hash,
        "cell": {"tier": cfg.tier, "dataset": cfg.dataset, "img_size": cfg.img_size, "backbone": cfg.backbone,
                 "strategy": cfg.strategy, "seed": cfg.seed,
                 **({} if cfg.protocol == "study" else {"protocol": cfg.protocol})},
        "config": {
            # The settings the kept model trained with: a tuned cell's are its chosen trial's (its lr).
            "train": asdict(ctx.settings),
            "weights": cfg.weights,
            "synthetic": cfg.synthetic,
            "strategy_params": strategy.hparams(ctx),
            "preprocess": ctx.preprocess.describe(),
            "amp": str(ctx.amp_dtype).replace("torch.", "") if ctx.amp_dtype else None,
            "channels_last": ctx.channels_last,
            "device": str(dev),
        },
        "strategy": {"name": strategy.name, "label": strategy.display_label(), "hparams": strategy.hparams(ctx),
                     "in_study": strategy.in_study,
                     "norm_modes": sorted({e.get("norm_mode", "") for e in trained_epochs} - {""}),
                     "log": strategy.log},
        "weights": dict(ctx.backbone.weights),
        "head": dict(ctx.head_init),
        "data": {
            **data.identity,
            "name": data.name,
            "task": data.task,
            "n_classes": data.n_classes,
            "n_channels": data.n_channels,
            "modality": data.modality,
            "image_size": data.image_size,
            "splits": {s: len(data.split(s)) for s in ("train", "val", "test")},
        },
        "metrics": None if metrics is None else {
            **metrics, "primary": primary_metric(data.task), "monitor": monitor, "majority": majority,
        },
        "weak_result": weak_result(data.task, {**metrics, "majority": majority}) if status == "ok" and metrics
        else None,
        "costs": {
            # Everything it takes to get the trained model: epochs, frozen features, gradient probes, solves.
            "train_s": train_s,
            "eval_s": tracker.eval_s,
            "feature_extraction_s": tracker.feature_s,
            "probe_s": tracker.probe_s,
            "fit_s": tracker.fit_s,
            "reused_train_s": strategy.reused_train_s,
            "wall_s": (finished - started).total_seconds(),
            "train_images_per_s": tracker.train_images / train_s if tracker.train_images and train_s > 0 else None,
            "peak_gpu_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if gpu else None,
            "peak_gpu_reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20 if gpu else None,
            "peak_host_rss_mb": peak_mb,
            "peak_host_scope": peak_scope,
            "trainable_params": tracker.max_trainable,
            "trainable_params_per_stage": tracker.trainable_per_stage,
            "total_params": sum(p.numel() for p in model.parameters()),
            "epochs_run": len(trained_epochs),
            "cached_feature_epochs": tracker.cached_feature_epochs,
            "early_stopping_s": tracker.select_s,
            "compile_s": tracker.compile_s,
            "feature_cache": tracker.feature_cache,
            "data_conversion_s": data.conversion_s,
            "best_epoch": best_epoch,
        },
        "drift": dict(tracker.drift),
        "epochs": tracker.epochs,
        "environment": env,
        "code": code_version(),
        "status": status,
        "error": error,
        "diverged_epoch": diverged_epoch,
        "reused_from": None,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
    }
    if tuning is not None:
        record["tuning"] = tuning
    record = _finite(json.loads(json.dumps(record, default=str)))
    validate(record, cfg.cell_id)
    return record
