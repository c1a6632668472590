"""A benchmark cell's configuration: frozen, hashable, and everything that affects its result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    """The training schedule. Defaults follow the study's authors (Adam 1e-3, cosine per epoch, patience 3)."""

    epochs: int = 30
    batch_size: int = 96
    eval_batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    optimizer_impl: str = "fused"  # fused | foreach | loop: torch's step kernels; fused is ~5x faster on a CPU
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine (stepped per epoch, per stage) | constant
    patience: int = 3  # early stopping on the validation metric; 0 disables
    monitor: str = "auto"  # validation metric for early stopping; auto = balanced_acc, or auc for multi-label
    max_train_samples: int | None = None
    augment: bool = False
    preprocess: str = "resize"  # resize | pad
    interpolation: str = "bilinear"
    compile: bool = False
    amp: str = "auto"  # auto = bf16 on CUDA, off on CPU | bf16 | off
    channels_last: str = "auto"  # auto = on for CUDA | on | off
    head_init: str = "scaled"  # scaled | zero | default: a new head starts neutral (models/head_init.py)


@dataclass(frozen=True)
class CellConfig:
    """One cell of the grid: dataset x backbone x strategy x seed, under a tier's settings."""

    tier: str
    dataset: str
    backbone: str
    strategy: str
    seed: int = 0
    img_size: int = 28  # the dataset file's image size (MedMNIST: 28/64/128/224)
    weights: str = "pretrained"  # pretrained | random | a path to a weight file or directory
    synthetic: bool = False
    synthetic_splits: tuple[tuple[str, int], ...] = ()
    strategy_params: tuple[tuple[str, Any], ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)

    @property
    def cell_id(self) -> str:
        """Readable id, the same as the pytest case id: tier-dataset[-size]-backbone-strategy-seedN."""
        size = "" if self.img_size == 28 else f"-{self.img_size}"
        return f"{self.tier}-{self.dataset}{size}-{self.backbone}-{self.strategy}-seed{self.seed}"

    def params(self) -> dict[str, Any]:
        return dict(self.strategy_params)

    def identity(self) -> dict[str, Any]:
        """Everything that affects the result (paths to data roots and results do not)."""
        d = asdict(self)
        d["strategy_params"] = {k: v for k, v in self.strategy_params}
        d["synthetic_splits"] = {k: v for k, v in self.synthetic_splits}
        return d

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_strategy(self, strategy: str, params: dict[str, Any] | None = None) -> CellConfig:
        return replace(self, strategy=strategy, strategy_params=freeze_params(params or {}))


def freeze_params(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))
