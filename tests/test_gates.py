"""The learning gate (synthetic data: the pipeline must learn) against the weak-result flag (real data: reported,
never failed), and the docs that describe them (issue 13, item 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medft_bench.gates import AUC_MARGIN, MUST_LEARN_ON_SYNTHETIC, learning_gate, weak_result

ROOT = Path(__file__).resolve().parents[1]


def record(*, synthetic: bool, strategy: str = "ft", task: str = "binary-class", acc: float = 0.5,
           auc: float | None = 0.9, balanced_acc: float = 0.5, status: str = "ok") -> dict[str, Any]:
    metrics = {"test": {"acc": acc, "auc": auc, "balanced_acc": balanced_acc},
               "majority": {"acc": 0.5, "balanced_acc": 0.5}}
    return {"status": status, "cell": {"strategy": strategy}, "data": {"synthetic": synthetic, "task": task},
            "metrics": metrics if status == "ok" else None}


def test_a_weak_result_on_real_data_is_flagged_not_failed() -> None:
    weak = record(synthetic=False, acc=0.5, balanced_acc=0.5)
    assert learning_gate(weak) is None
    assert weak_result(weak["data"]["task"], weak["metrics"]) == "acc 0.500 <= majority 0.500"
    good = record(synthetic=False, acc=0.8, balanced_acc=0.75)
    assert learning_gate(good) is None and weak_result("binary-class", good["metrics"]) is None
    assert weak_result("multi-label, binary-class", record(synthetic=False, auc=0.5)["metrics"]) == \
        "AUC 0.500 <= 0.5 (chance)"


@pytest.mark.parametrize("strategy", MUST_LEARN_ON_SYNTHETIC)
def test_the_hard_gate_stays_on_synthetic_data(strategy: str) -> None:
    assert learning_gate(record(synthetic=True, strategy=strategy, auc=0.5 + AUC_MARGIN)) == \
        f"test AUC {0.5 + AUC_MARGIN} does not beat chance (0.5) by {AUC_MARGIN}"
    assert learning_gate(record(synthetic=True, strategy=strategy, auc=None)) is not None
    assert learning_gate(record(synthetic=True, strategy=strategy, auc=0.5 + AUC_MARGIN + 0.01)) is None
    assert learning_gate(record(synthetic=True, strategy="lp", auc=0.5)) is None  # only FT and LP-FT must learn
    assert learning_gate(record(synthetic=True, strategy=strategy, status="failed")) is None


def test_docs_describe_the_gate_gates_py_checks() -> None:
    running = " ".join((ROOT / "docs" / "running.md").read_text().split())
    assert (f"On synthetic data, FT and LP-FT must beat chance by a clear margin: test AUC > 0.5 + {AUC_MARGIN}"
            in running)
    assert "On real data no result fails the case" in running
    assert "`weak_result`" in " ".join((ROOT / "docs" / "record.md").read_text().split())
