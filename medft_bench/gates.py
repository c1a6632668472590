"""When a finished cell counts as a failure: it did not learn where it must."""

from __future__ import annotations

from typing import Any

MUST_LEARN_ON_SYNTHETIC = ("ft", "lp_ft")
MARGIN = 0.05


def chance_level(record: dict[str, Any]) -> float:
    """The primary metric of a classifier that ignores the image (AUC 0.5; balanced accuracy 1/C)."""
    metric = record["metrics"]["primary"]
    if metric in ("auc",):
        return 0.5
    if metric == "balanced_acc":
        return 1.0 / record["data"]["n_classes"] if record["data"]["task"] != "multi-label, binary-class" else 0.5
    return record["metrics"]["majority"]["acc"]


def learning_gate(record: dict[str, Any]) -> str | None:
    """A reason the cell must count as failed, or None.

    Synthetic data (smoke tier): FT and LP-FT must beat chance on the primary metric by a clear margin.
    Real data: every strategy must beat the majority-class baseline (test accuracy; AUC > 0.5 for
    multi-label, where all-negative already scores a high accuracy).
    """
    metrics = record.get("metrics")
    if record["status"] != "ok" or not metrics:
        return None
    test = metrics["test"]
    if record["data"]["synthetic"]:
        if record["cell"]["strategy"] not in MUST_LEARN_ON_SYNTHETIC:
            return None
        value, floor = test[metrics["primary"]], chance_level(record) + MARGIN
        if value is None or value <= floor:
            return f"test {metrics['primary']} {value} does not beat chance ({floor - MARGIN:.3f}) by {MARGIN}"
        return None
    if record["data"]["task"] == "multi-label, binary-class":
        if test["auc"] is None or test["auc"] <= 0.5:
            return f"test AUC {test['auc']} is no better than chance (0.5)"
        return None
    if test["acc"] <= metrics["majority"]["acc"]:
        majority = metrics["majority"]["acc"]
        return f"test accuracy {test['acc']:.4f} is no better than the majority class ({majority:.4f})"
    return None
