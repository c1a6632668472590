"""Small configurations and hand-made result records shared by the tests (no torch: the unit lane imports it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from medft_bench.config import IDENTITY_VERSION, CellConfig, TrainSettings
from medft_bench.results.record import SCHEMA_VERSION, validate

TINY_SPLITS = (("train", 32), ("val", 16), ("test", 16))
# One smoke cell on the command line (LP on a random ResNet-18: seconds)
SMOKE_CELL = ["--tier", "smoke", "--dataset", "pneumoniamnist", "--backbone", "resnet18", "--strategy", "lp",
              "--seed", "0"]


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub and no download: what a test of the command line runs under (and no user's data root)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MEDFT_OFFLINE", "1")
    monkeypatch.delenv("MEDFT_DATA_ROOT", raising=False)


def tiny_cell(backbone: str = "resnet18", strategy: str = "ft", *, dataset: str = "pneumoniamnist",
              splits: tuple = TINY_SPLITS, seed: int = 0, params: dict[str, Any] | None = None,
              **train: Any) -> CellConfig:
    settings = {"epochs": 1, "batch_size": 16, "eval_batch_size": 64, "patience": 0, **train}
    return CellConfig(tier="unit", dataset=dataset, backbone=backbone, strategy=strategy, seed=seed, img_size=32,
                      weights="random", synthetic=True, synthetic_splits=splits,
                      strategy_params=tuple(sorted((params or {}).items())), train=TrainSettings(**settings))


def comparable(value: Any) -> Any:
    """A record without what differs between two runs of the same cell: timings, memory, host, clock."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()
                if k not in ("started", "finished", "environment", "seconds") and not k.endswith(("_s", "_mb"))}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


# Hand-made, schema-valid result records (the leaderboard's and the store's tests)
MULTI_LABEL = "multi-label, binary-class"
STUDY = {"ft", "lp", "gu_first_last", "gu_last_first", "lp_ft", "l1_sp", "l2_sp", "auto_rgn"}
TASKS = {"chestmnist": MULTI_LABEL, "pneumoniamnist": "binary-class", "breastmnist": "binary-class"}
# The labels the built-in strategies declare (Strategy.label), as a record written today carries them.
LABELS = {"ft": "FT", "lp": "LP", "lp_ft": "LP-FT", "auto_rgn": "Auto-RGN", "gu_first_last": "GU first-to-last",
          "gu_last_first": "GU last-to-first", "l1_sp": "L1-SP", "l2_sp": "L2-SP", "knn": "kNN",
          "bitfit": "BitFit"}
MODALITY = {"pathmnist": "histology", "dermamnist": "dermoscopy", "chestmnist": "x-ray"}
N_CLASSES = {"pathmnist": 9, "dermamnist": 7, "chestmnist": 14}
MAJORITY = {"pathmnist": {"acc": 0.186, "balanced_acc": 1 / 9}, "dermamnist": {"acc": 0.67, "balanced_acc": 1 / 7},
            "chestmnist": {"acc": 0.947, "balanced_acc": 0.5}}


def make_record(*, tier: str = "quick", dataset: str = "pathmnist", img_size: int = 28, backbone: str = "resnet50",
                strategy: str = "ft", seed: int = 0, primary: float | None = 0.8, acc: float | None = None,
                status: str = "ok", weights: str = "pretrained", synthetic: bool = False, train_s: float = 10.0,
                gpu_mb: float | None = None, rss_mb: float = 1500.0, trainable: int = 1000,
                finished: str = "2025-03-01T12:00:00+00:00", commit: str = "0123456789abcdef0123",
                dirty: bool = False, error: str | None = None, extra_hash: str = "", in_study: bool | None = None,
                drift: dict[str, float] | None = None, best_epoch: int = 2) -> dict[str, Any]:
    """A schema-valid result record for one cell; ``primary`` is the test value of the ranking metric (AUC) and,
    single-label, of balanced accuracy (the claims' metric) too; ``acc`` the test ACC (default primary + 0.2)."""
    task = TASKS.get(dataset, "multi-class")
    primary_name = "auc" if task == MULTI_LABEL else "balanced_acc"
    cell = {"tier": tier, "dataset": dataset, "img_size": img_size, "backbone": backbone, "strategy": strategy,
            "seed": seed}
    blob = json.dumps([cell, weights, synthetic, extra_hash], sort_keys=True)
    cell["protocol"] = "study"
    config_hash = hashlib.sha256(blob.encode()).hexdigest()[:16]
    size = "" if img_size == 28 else f"-{img_size}"
    metrics = None
    if status == "ok" or (status == "diverged" and primary is not None):
        test = {"acc": min(0.99, primary + 0.2) if acc is None else acc, "auc": primary, "balanced_acc": primary,
                "f1_macro": 0.5, "map": 0.4}
        if task == MULTI_LABEL:
            test.update(acc=0.95 if acc is None else acc)
        metrics = {"val": dict(test), "test": test, "primary": primary_name, "monitor": primary_name,
                   "majority": MAJORITY.get(dataset, {"acc": 0.5, "balanced_acc": 0.5})}
    record = {
        "schema_version": SCHEMA_VERSION,
        "cell_id": f"{tier}-{dataset}{size}-{backbone}-{strategy}-seed{seed}",
        "config_hash": config_hash,
        "identity": {"version": IDENTITY_VERSION, "earlier_hashes": {}},
        "cell": cell,
        "config": {"train": {"epochs": 3, "batch_size": 32, "lr": 1e-3, "optimizer": "adam", "scheduler": "cosine",
                             "patience": 3},
                   "weights": weights, "synthetic": synthetic, "strategy_params": {},
                   "preprocess": {"target_size": 32, "policy": "resize", "mean": [0.5], "std": [0.5]},
                   "amp": None, "channels_last": False},
        "strategy": {"name": strategy, "label": LABELS.get(strategy, strategy), "hparams": {},
                     "in_study": strategy in STUDY if in_study is None else in_study,
                     "norm_modes": [], "log": {}, "complete": True, "incomplete_reason": None},
        "weights": {"source": {"pretrained": "hub", "random": "random"}.get(weights, "file")},
        "data": {"source": "synthetic" if synthetic else "medmnist", "synthetic": synthetic, "task": task,
                 "n_classes": N_CLASSES.get(dataset, 2), "splits": {"train": 100, "val": 20, "test": 20},
                 "md5": "0" * 32, "file": f"/data/{dataset}.npz", "modality": MODALITY.get(dataset, "")},
        "metrics": metrics,
        "costs": {"train_s": train_s, "eval_s": 1.0, "wall_s": train_s + 2.0, "train_images_per_s": 100.0,
                  "peak_gpu_allocated_mb": gpu_mb, "peak_gpu_reserved_mb": gpu_mb, "peak_host_rss_mb": rss_mb,
                  "trainable_params": trainable, "total_params": 25_000_000, "epochs_run": 3,
                  "best_epoch": best_epoch},
        "epochs": [],
        "environment": {"python": "3.11.9", "packages": {"torch": "2.14.1", "timm": "1.0.31"}, "device": "cpu",
                        "cpu": "Test CPU", "gpu": None},
        "code": {"version": "0.1.0", "commit": commit, "dirty": dirty},
        "status": status,
        "error": error if status != "ok" else None,
        "diverged_epoch": 2 if status == "diverged" else None,
        "reused_from": None,
        "started": "2025-03-01T11:00:00+00:00",
        "finished": finished,
    }
    if drift is not None:
        record["drift"] = drift
    validate(record, record["cell_id"])
    return record


def write(root: Path, record: dict[str, Any]) -> Path:
    path = root / record["cell"]["tier"] / f"{record['cell_id']}__{record['config_hash']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True))
    return path


def tuned_record(**kw: Any) -> dict[str, Any]:
    """A record of the tuned protocol (two learning rates tried), else as ``make_record``."""
    rec = make_record(extra_hash="tuned", **kw)
    rec["cell"]["protocol"] = "tuned"
    rec["cell_id"] = rec["cell_id"].replace(f"-seed{rec['cell']['seed']}", f"-tuned-seed{rec['cell']['seed']}")
    rec["tuning"] = {"grid": [1e-4, 1e-3], "chosen_lr": 1e-4, "chosen_trial": "0" * 16, "model": "kept",
                     "trials": [{"trial_hash": "0" * 16, "lr": 1e-4, "status": "ok", "val": None, "epochs_run": 3,
                                 "train_s": kw.get("train_s", 10.0) / 2}]}
    validate(rec)
    return rec
