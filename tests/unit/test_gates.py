"""The learning gate (synthetic data: the pipeline must learn) against the weak-result flag (real data: reported,
never failed), and the docs that describe them (issue 13, item 10)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from medft_bench.gates import AUC_MARGIN, MUST_LEARN_ON_SYNTHETIC, learning_gate, weak_result
from medft_bench.results.view import RecordView

ROOT = Path(__file__).resolve().parents[2]


def record(*, synthetic: bool, strategy: str = "ft", task: str = "binary-class", acc: float = 0.5,
           auc: float | None = 0.9, balanced_acc: float = 0.5, status: str = "ok") -> dict[str, Any]:
    metrics = {"test": {"acc": acc, "auc": auc, "balanced_acc": balanced_acc},
               "majority": {"acc": 0.5, "balanced_acc": 0.5}}
    return {"status": status, "cell": {"strategy": strategy}, "data": {"synthetic": synthetic, "task": task},
            "metrics": metrics if status == "ok" else None}


def gate(rec: dict[str, Any]) -> str | None:
    return learning_gate(RecordView(rec))


def test_a_weak_result_on_real_data_is_flagged_not_failed() -> None:
    weak = record(synthetic=False, acc=0.5, balanced_acc=0.5)
    assert gate(weak) is None
    assert weak_result(weak["data"]["task"], weak["metrics"]) == "acc 0.500 <= majority 0.500"
    good = record(synthetic=False, acc=0.8, balanced_acc=0.75)
    assert gate(good) is None and weak_result("binary-class", good["metrics"]) is None
    assert weak_result("multi-label, binary-class", record(synthetic=False, auc=0.5)["metrics"]) == \
        "AUC 0.500 <= 0.5 (chance)"


@pytest.mark.parametrize("strategy", MUST_LEARN_ON_SYNTHETIC)
def test_the_hard_gate_stays_on_synthetic_data(strategy: str) -> None:
    assert gate(record(synthetic=True, strategy=strategy, auc=0.5 + AUC_MARGIN)) == \
        f"test AUC {0.5 + AUC_MARGIN} does not beat chance (0.5) by {AUC_MARGIN}"
    assert gate(record(synthetic=True, strategy=strategy, auc=None)) is not None
    assert gate(record(synthetic=True, strategy=strategy, auc=0.5 + AUC_MARGIN + 0.01)) is None
    assert gate(record(synthetic=True, strategy="lp", auc=0.5)) is None  # only FT and LP-FT must learn
    assert gate(record(synthetic=True, strategy=strategy, status="failed")) is None


def test_docs_describe_the_gate_gates_py_checks() -> None:
    running = " ".join((ROOT / "docs" / "running.md").read_text().split())
    assert (f"On synthetic data, FT and LP-FT must beat chance by a clear margin: test AUC > 0.5 + {AUC_MARGIN}"
            in running)
    assert "On real data no result fails the case" in running
    assert "`weak_result`" in " ".join((ROOT / "docs" / "record.md").read_text().split())


def test_a_blown_up_first_epoch_is_named_next_to_the_majority_flag() -> None:
    from medft_bench.gates import BLOW_UP_FACTOR, blow_up

    def run(first_loss: float, task: str = "binary-class", n: int = 2) -> RecordView:
        return RecordView({"data": {"task": task, "n_classes": n},
                "epochs": [{"stage": "lp"}, {"stage": "ft", "start": True},
                           {"stage": "ft", "epoch": 0, "lr": 1e-3, "train_loss": first_loss},
                           {"stage": "ft", "epoch": 1, "lr": 1e-3, "train_loss": 0.1}]})

    ln2 = 0.6931471805599453
    assert blow_up(run(BLOW_UP_FACTOR * ln2 * 0.99)) is None  # a slow start is not a blow-up
    said = blow_up(run(129.7))
    assert said is not None and "129.7" in said and "stage ft" in said and "lr 0.001" in said
    assert blow_up(run(12.0, n=8)) is None  # 10 x ln 8 = 20.8
    assert blow_up(run(7.5, task="multi-label, binary-class", n=14)) is not None  # ln 2 per label
    assert blow_up(RecordView({"data": {}, "epochs": [{"stage": "lp"}]})) is None  # nothing trained


def test_majority_causes_name_a_blow_up_and_parallel_features() -> None:
    from medft_bench.gates import majority_causes, parallel_features

    def run(first_loss: float, cosine: float | None) -> RecordView:
        return RecordView({"data": {"task": "binary-class", "n_classes": 2},
                           "head": {"init": "scaled", "feature_cosine": cosine},
                "epochs": [{"stage": "train", "epoch": 0, "lr": 1e-3, "train_loss": first_loss}]})

    assert parallel_features(run(0.9, 0.32)) is None and parallel_features(run(0.9, None)) is None
    assert majority_causes(run(0.9, 0.32)) == []
    [note] = majority_causes(run(0.9, 0.985))  # no blow-up: a head swinging on parallel features
    assert "mean cosine 0.98" in note
    blew, parallel = majority_causes(run(55.5, 0.985))
    assert blew.startswith("blew up: first-epoch training loss 55.5") and parallel == note
    assert parallel_features(RecordView({"epochs": []})) is None  # older records have no head statistics
