"""When a finished cell counts as a failure: it did not learn where it must."""

from __future__ import annotations

from typing import Any

MUST_LEARN_ON_SYNTHETIC = ("ft", "lp_ft")
AUC_MARGIN = 0.1


def learning_gate(record: dict[str, Any]) -> str | None:
    """A reason the cell must count as failed, or None.

    Synthetic data (smoke tier): FT and LP-FT must beat chance by a clear margin, judged by test AUC (chance
    0.5 for every task type). AUC is threshold-free: a network trained from random weights for a few steps
    often ranks the classes well before its decision threshold settles (e.g. VGG-19 without BatchNorm),
    and what the gate must catch is a pipeline that learns nothing (shuffled labels, broken inputs).
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
        auc = test["auc"]
        if auc is None or auc <= 0.5 + AUC_MARGIN:
            return f"test AUC {auc} does not beat chance (0.5) by {AUC_MARGIN}"
        return None
    if record["data"]["task"] == "multi-label, binary-class":
        if test["auc"] is None or test["auc"] <= 0.5:
            return f"test AUC {test['auc']} is no better than chance (0.5)"
        return None
    if test["acc"] <= metrics["majority"]["acc"]:
        majority = metrics["majority"]["acc"]
        return f"test accuracy {test['acc']:.4f} is no better than the majority class ({majority:.4f})"
    return None
