"""Classification metrics: MedMNIST's exact ACC and AUC, plus balanced accuracy, macro F1 and mAP.

ACC and AUC follow ``medmnist.evaluator`` (tested against it): AUC is the positive-class AUC for binary
tasks, the unweighted one-vs-rest mean for multi-class and ordinal tasks, and the per-label mean for
multi-label; ACC thresholds probabilities at 0.5 for binary and multi-label, and takes the argmax
otherwise. Balanced accuracy is the study's "accuracy" (macro-averaged recall).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score

# The metric names and the primary-metric rule live in vocabulary.py, shared with the leaderboard (no torch there).
from medft_bench.vocabulary import METRICS as METRICS
from medft_bench.vocabulary import MULTI_LABEL
from medft_bench.vocabulary import primary_metric as primary_metric


def _safe_auc(y: np.ndarray, s: np.ndarray) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")  # undefined for a label absent from (or constant in) the split
    return float(roc_auc_score(y, s))


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if not np.isnan(v)]
    return float(np.mean(vals)) if vals else None


def compute_metrics(task: str, y_true: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    """Metrics for probabilities ``scores`` (N, C) against labels (N,) or (N, L) for multi-label."""
    y_true = np.asarray(y_true)
    scores = np.asarray(scores, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == MULTI_LABEL:
            y = y_true.astype(int)
            pred = scores > 0.5
            n = y.shape[1]
            return {
                "acc": float(np.mean([(pred[:, j] == y[:, j]).mean() for j in range(n)])),
                "auc": _mean([_safe_auc(y[:, j], scores[:, j]) for j in range(n)]),
                "balanced_acc": _mean([balanced_accuracy_score(y[:, j], pred[:, j]) if len(np.unique(y[:, j])) > 1
                                       else float("nan") for j in range(n)]),
                "f1_macro": float(f1_score(y, pred, average="macro", zero_division=0)),
                "map": _mean([float(average_precision_score(y[:, j], scores[:, j])) if y[:, j].any()
                              else float("nan") for j in range(n)]),
            }
        y = y_true.reshape(-1).astype(int)
        n_classes = scores.shape[1]
        if task == "binary-class":
            acc = float(((scores[:, -1] > 0.5) == y).mean())
            auc = _safe_auc(y, scores[:, -1])
            pred = (scores[:, -1] > 0.5).astype(int)
        else:
            pred = scores.argmax(1)
            acc = float((pred == y).mean())
            auc = _mean([_safe_auc((y == c).astype(int), scores[:, c]) for c in range(n_classes)])
        onehot = np.eye(n_classes, dtype=int)[y]
        present = onehot.any(0)
        return {
            "acc": acc,
            "auc": None if auc is None or np.isnan(auc) else float(auc),
            "balanced_acc": float(balanced_accuracy_score(y, pred)),
            "f1_macro": float(f1_score(y, pred, labels=np.arange(n_classes), average="macro", zero_division=0)),
            "map": float(average_precision_score(onehot[:, present], scores[:, present], average="macro"))
            if present.sum() > 1 else None,
        }


def majority_baseline(task: str, y_true: np.ndarray) -> dict[str, float]:
    """ACC and balanced accuracy of always predicting the most frequent class (or all-negative)."""
    y_true = np.asarray(y_true)
    if task == MULTI_LABEL:
        pos = y_true.mean(0)
        return {"acc": float(np.maximum(pos, 1 - pos).mean()), "balanced_acc": 0.5}
    y = y_true.reshape(-1).astype(int)
    counts = np.bincount(y)
    return {"acc": float(counts.max() / len(y)), "balanced_acc": 1.0 / max(1, int((counts > 0).sum()))}


def selection_key(val: dict[str, Any], monitor: str) -> tuple[float, float]:
    """How epochs are compared for checkpoint selection and early stopping: the monitored metric, ties broken
    by validation AUC (by balanced accuracy when AUC is the monitor). Balanced accuracy is coarse: epochs that
    all predict one class tie at 1/classes, and without the tie-break the first of them would be kept however
    well the later ones rank."""

    def get(name: str) -> float:
        v = val.get(name)
        return -math.inf if v is None or not math.isfinite(v) else float(v)

    return get(monitor), get(tie_break_metric(monitor))


def tie_break_metric(monitor: str) -> str:
    return "balanced_acc" if monitor == "auc" else "auc"
