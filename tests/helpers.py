"""Small configurations shared by the tests."""

from __future__ import annotations

from typing import Any

import pytest

from medft_bench.config import CellConfig, TrainSettings

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
