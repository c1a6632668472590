import numpy as np
import pytest
from medmnist.evaluator import getACC, getAUC

from medft_bench.metrics import compute_metrics, majority_baseline, primary_metric

TASKS = ["binary-class", "multi-class", "ordinal-regression", "multi-label, binary-class"]


def _case(task: str, rng: np.random.Generator, n: int = 200):
    if task == "multi-label, binary-class":
        y = (rng.random((n, 14)) < 0.3).astype(int)
        s = np.clip(y * 0.3 + rng.random((n, 14)) * 0.7, 0, 1)
        return y, s
    c = 2 if task == "binary-class" else 5
    y = rng.integers(0, c, (n, 1))
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y[:, 0]]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


@pytest.mark.parametrize("task", TASKS)
def test_acc_and_auc_match_medmnist_evaluator(task: str) -> None:
    y, s = _case(task, np.random.default_rng(0))
    m = compute_metrics(task, y, s)
    assert m["acc"] == pytest.approx(getACC(y, s, task), abs=1e-12)
    assert m["auc"] == pytest.approx(getAUC(y, s, task), abs=1e-12)
    assert 0 <= m["balanced_acc"] <= 1 and 0 <= m["f1_macro"] <= 1 and m["map"] is not None


def test_balanced_accuracy_is_macro_recall() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([[0.9, 0.1]] * 4 + [[0.9, 0.1], [0.1, 0.9]])
    m = compute_metrics("binary-class", y, s)
    assert m["acc"] == pytest.approx(5 / 6)
    assert m["balanced_acc"] == pytest.approx((1.0 + 0.5) / 2)


def test_majority_baseline_and_primary_metric() -> None:
    assert majority_baseline("multi-class", np.array([0, 0, 0, 1]))["acc"] == 0.75
    y = np.array([[0, 1], [0, 0], [0, 0], [1, 0]])
    assert majority_baseline("multi-label, binary-class", y)["acc"] == pytest.approx(0.75)
    assert primary_metric("multi-label, binary-class") == "auc"
    assert primary_metric("multi-class") == "balanced_acc"
