"""Building and validating the one result record per cell (schema in ``schema.json``)."""

from __future__ import annotations

import functools
import json
import math
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from medft_bench.config import IDENTITY_VERSION
from medft_bench.errors import RecordError
from medft_bench.gates import weak_result
from medft_bench.io import json_safe
from medft_bench.results.identity import earlier_hashes
from medft_bench.vocabulary import primary_metric

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.results.facts import CellFacts

SCHEMA_VERSION = 4  # bumped with a step in upgrade.py


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


def build_record(facts: CellFacts, environment: dict[str, Any], code: dict[str, Any]) -> dict[str, Any]:
    """The record of a cell's outcome, validated against the schema (not yet written: ``results.store``). A pure
    function of what the engine measured and decided (``facts``) and of where it ran (``environment``, ``code``:
    ``results.environment``)."""
    cfg, m = facts.cfg, facts.measured
    record = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": cfg.cell_id,
        "config_hash": cfg.config_hash,
        "identity": identity_of(cfg),
        "cell": {"tier": cfg.tier, "dataset": cfg.dataset, "img_size": cfg.img_size, "backbone": cfg.backbone,
                 "strategy": cfg.strategy, "seed": cfg.seed, "protocol": cfg.protocol},
        "config": {
            # The settings the kept model trained with: a tuned cell's are its chosen trial's (its lr).
            "train": facts.settings,
            "weights": cfg.weights,
            "synthetic": cfg.synthetic,
            "strategy_params": facts.strategy["hparams"],
            "preprocess": facts.preprocess,
            "amp": facts.amp,
            "channels_last": facts.channels_last,
            "device": facts.device,
        },
        "strategy": {**facts.strategy,
                     "norm_modes": sorted({e.get("norm_mode", "") for e in m.trained_epochs} - {""})},
        "weights": facts.weights,
        "head": facts.head,
        "data": facts.data,
        **_metrics(facts),
        "costs": _costs(facts),
        "drift": dict(m.drift),
        "epochs": m.epochs,
        "environment": environment,
        "code": code,
        "status": facts.status,
        "error": facts.error,
        "diverged_epoch": facts.diverged_epoch,
        "reused_from": None,
        "started": facts.started.isoformat(),
        "finished": facts.finished.isoformat(),
    }
    if facts.tuning is not None:
        record["tuning"] = facts.tuning
    record = json_safe(record)
    validate(record, cfg.cell_id)
    return record


def identity_of(cfg: CellConfig) -> dict[str, Any]:
    """A record's ``identity``: the version its ``config_hash`` is computed under and the cell's hashes under
    earlier versions (:mod:`medft_bench.results.identity`), so that a reader matches it with a record written
    before the identity changed (``RecordView.same_configuration``)."""
    return {"version": IDENTITY_VERSION, "earlier_hashes": {str(v): h for v, h in earlier_hashes(cfg).items()}}


def _metrics(facts: CellFacts) -> dict[str, Any]:
    """``metrics`` (with the majority-class baseline on the test split) and ``weak_result``."""
    if facts.metrics is None:
        return {"metrics": None, "weak_result": None}
    metrics = {**facts.metrics, "primary": primary_metric(facts.task), "monitor": facts.monitor,
               "majority": facts.majority}
    return {"metrics": metrics, "weak_result": weak_result(facts.task, metrics) if facts.status == "ok" else None}


def _costs(facts: CellFacts) -> dict[str, Any]:
    m = facts.measured
    train_s = m.training_s + facts.reused_train_s
    return {
        # Everything it takes to get the trained model: epochs, frozen features, gradient probes, solves.
        "train_s": train_s,
        "eval_s": m.eval_s,
        "feature_extraction_s": m.feature_s,
        "probe_s": m.probe_s,
        "fit_s": m.fit_s,
        "reused_train_s": facts.reused_train_s,
        "wall_s": (facts.finished - facts.started).total_seconds(),
        "train_images_per_s": m.train_images / train_s if m.train_images and train_s > 0 else None,
        "peak_gpu_allocated_mb": facts.peak_gpu_allocated_mb,
        "peak_gpu_reserved_mb": facts.peak_gpu_reserved_mb,
        "peak_host_rss_mb": facts.peak_host_rss_mb,
        "peak_host_scope": facts.peak_host_scope,
        "trainable_params": m.max_trainable,
        "trainable_params_per_stage": m.trainable_per_stage,
        "total_params": facts.total_params,
        "epochs_run": len(m.trained_epochs),
        "cached_feature_epochs": m.cached_feature_epochs,
        "early_stopping_s": m.select_s,
        "compile_s": m.compile_s,
        "feature_cache": m.feature_cache,
        "data_conversion_s": facts.data_conversion_s,
        "best_epoch": m.best_epoch,
    }
