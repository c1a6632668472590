"""Every built-in strategy end to end on ResNet-18: tiny synthetic data, two epochs, a valid ok record."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medft_bench.config import CellConfig, TrainSettings, freeze_params
from medft_bench.results.record import validate
from medft_bench.runner import compute_cell

BUILTIN = ["ft", "lp", "gu_last_first", "gu_first_last", "lp_ft", "l2_sp", "l1_sp", "auto_rgn", "auto_snr",
           "surgical", "llrd", "bitfit", "norm_only", "lora", "knn"]
# Per-example gradients of ResNet-18 cost about 0.1 s per image on this CPU: probe 16 images, not 64.
PARAMS: dict[str, dict[str, Any]] = {"auto_snr": {"max_examples": 16}}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", BUILTIN)
def test_every_strategy_gives_a_valid_record_on_resnet18(strategy: str) -> None:
    cfg = CellConfig(tier="unit", dataset="pneumoniamnist", backbone="resnet18", strategy=strategy, weights="random",
                     synthetic=True, img_size=32, synthetic_splits=(("train", 64), ("val", 32), ("test", 32)),
                     strategy_params=freeze_params(PARAMS.get(strategy, {})),
                     train=TrainSettings(epochs=2, batch_size=16))
    rec = compute_cell(cfg).record
    validate(rec)
    assert rec["status"] == "ok", rec["error"]
    assert rec["diverged_epoch"] is None
    assert rec["strategy"]["name"] == strategy
    assert rec["metrics"]["test"]["auc"] is not None
    costs = rec["costs"]
    if strategy == "knn":
        assert costs["epochs_run"] == 0 and costs["trainable_params"] == 0
    elif strategy == "lp":  # solved, no epochs
        assert costs["epochs_run"] == 0 and costs["trainable_params"] == 1026 and costs["fit_s"] > 0
    else:
        assert costs["epochs_run"] >= 2 and 0 < costs["trainable_params"] <= costs["total_params"]
        assert all(e["train_loss"] == e["train_loss"] for e in rec["epochs"] if "train_loss" in e)  # finite
    if strategy == "lora":
        assert costs["total_params"] > 11_177_538  # the adapters were added
    if strategy in ("ft", "l2_sp", "l1_sp", "llrd", "lp_ft"):
        assert costs["trainable_params"] == costs["total_params"]
