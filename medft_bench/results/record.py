"""Building and validating the one result record per cell (schema in ``schema.json``)."""

from __future__ import annotations

import functools
import json
import math
import resource
import sys
from dataclasses import asdict
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from medft_bench.errors import RecordError
from medft_bench.io import json_safe

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext
    from medft_bench.training.outcome import CellRun

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


def build_record(run: CellRun) -> dict[str, Any]:
    """The record of a cell's outcome, validated against the schema (not yet written: ``results.store``)."""
    from medft_bench.results.environment import code_version, environment

    peak_mb, peak_scope = host_peak()
    cfg, ctx, strategy = run.cfg, run.ctx, run.strategy
    hparams = strategy.hparams(ctx)
    record = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cfg.cell_id,
        "config_hash": cfg.config_hash,
        "cell": {"tier": cfg.tier, "dataset": cfg.dataset, "img_size": cfg.img_size, "backbone": cfg.backbone,
                 "strategy": cfg.strategy, "seed": cfg.seed,
                 **({} if cfg.protocol == "study" else {"protocol": cfg.protocol})},
        "config": _config(run, hparams),
        "strategy": {"name": strategy.name, "label": strategy.display_label(), "hparams": hparams,
                     "in_study": strategy.in_study, **({"variant": v} if (v := strategy.variant()) else {}),
                     "norm_modes": sorted({e.get("norm_mode", "") for e in run.measured.trained_epochs} - {""}),
                     "log": strategy.log},
        "weights": dict(ctx.backbone.weights),
        "head": dict(ctx.head_init),
        "data": _data(ctx),
        **_metrics(run),
        "costs": {**_costs(run), "peak_host_rss_mb": peak_mb, "peak_host_scope": peak_scope},
        "drift": dict(run.measured.drift),
        "epochs": run.measured.epochs,
        "environment": environment(ctx.device),
        "code": code_version(),
        "status": run.status,
        "error": run.error,
        "diverged_epoch": run.diverged_epoch,
        "reused_from": None,
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat(),
    }
    if run.tuning is not None:
        record["tuning"] = run.tuning
    record = json_safe(record)
    validate(record, cfg.cell_id)
    return record


def _config(run: CellRun, hparams: dict[str, Any]) -> dict[str, Any]:
    ctx = run.ctx
    return {
        # The settings the kept model trained with: a tuned cell's are its chosen trial's (its lr).
        "train": asdict(ctx.settings),
        "weights": run.cfg.weights,
        "synthetic": run.cfg.synthetic,
        "strategy_params": hparams,
        "preprocess": ctx.preprocess.describe(),
        "amp": str(ctx.amp_dtype).replace("torch.", "") if ctx.amp_dtype else None,
        "channels_last": ctx.channels_last,
        "device": str(ctx.device),
    }


def _data(ctx: CellContext) -> dict[str, Any]:
    data = ctx.data
    return {**data.identity, "name": data.name, "task": data.task, "n_classes": data.n_classes,
            "n_channels": data.n_channels, "modality": data.modality, "image_size": data.image_size,
            "splits": {s: len(data.split(s)) for s in ("train", "val", "test")}}


def _metrics(run: CellRun) -> dict[str, Any]:
    """``metrics`` (with the majority-class baseline on the test split) and ``weak_result``."""
    from medft_bench.gates import weak_result
    from medft_bench.metrics import majority_baseline, primary_metric

    task = run.ctx.data.task
    if run.metrics is None:
        return {"metrics": None, "weak_result": None}
    majority = majority_baseline(task, run.ctx.data.test.labels.numpy())
    metrics = {**run.metrics, "primary": primary_metric(task), "monitor": run.monitor, "majority": majority}
    return {"metrics": metrics, "weak_result": weak_result(task, metrics) if run.status == "ok" else None}


def _costs(run: CellRun) -> dict[str, Any]:
    import torch

    m, dev = run.measured, run.ctx.device
    gpu = dev.type == "cuda"
    train_s = m.training_s + run.strategy.reused_train_s
    return {
        # Everything it takes to get the trained model: epochs, frozen features, gradient probes, solves.
        "train_s": train_s,
        "eval_s": m.eval_s,
        "feature_extraction_s": m.feature_s,
        "probe_s": m.probe_s,
        "fit_s": m.fit_s,
        "reused_train_s": run.strategy.reused_train_s,
        "wall_s": (run.finished - run.started).total_seconds(),
        "train_images_per_s": m.train_images / train_s if m.train_images and train_s > 0 else None,
        "peak_gpu_allocated_mb": torch.cuda.max_memory_allocated(dev) / 2**20 if gpu else None,
        "peak_gpu_reserved_mb": torch.cuda.max_memory_reserved(dev) / 2**20 if gpu else None,
        "trainable_params": m.max_trainable,
        "trainable_params_per_stage": m.trainable_per_stage,
        "total_params": sum(p.numel() for p in run.ctx.model.parameters()),
        "epochs_run": len(m.trained_epochs),
        "cached_feature_epochs": m.cached_feature_epochs,
        "early_stopping_s": m.select_s,
        "compile_s": m.compile_s,
        "feature_cache": m.feature_cache,
        "data_conversion_s": run.ctx.data.conversion_s,
        "best_epoch": m.best_epoch,
    }
