"""What a record is built from, as plain values: :class:`Measurements` (what a cell measured while it trained and
evaluated: seconds by kind, images, epochs, trainable sizes, drift) and :class:`CellFacts` (everything the engine
measured or decided about one cell).

The engine fills them (``training/engine.py`` a ``Measurements``, ``training.outcome.CellRun.facts`` the
``CellFacts``); ``results.record.build_record`` lays them out. They live here, with the records, so that the records
import nothing of the engine's (and no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medft_bench.config import CellConfig


@dataclass
class Measurements:
    """Everything measured while the cell runs; ``results.record`` turns it into the record's costs."""

    train_s: float = 0.0
    eval_s: float = 0.0
    feature_s: float = 0.0
    train_images: int = 0
    epochs: list[dict[str, Any]] = field(default_factory=list)
    max_trainable: int = 0
    trainable_per_stage: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)
    cached_feature_epochs: int = 0
    select_s: float = 0.0  # early stopping: keeping the best epoch's weights and restoring them
    probe_s: float = 0.0  # the strategy's per-epoch decisions (Auto-RGN / Auto-SNR gradient probes)
    fit_s: float = 0.0  # stages done without epochs (the linear probe's solve, a reused head), the kNN vote
    drift: dict[str, float] = field(default_factory=dict)  # per stage: ||theta - theta0|| / ||theta0||, backbone
    first_steps_s: list[float] = field(default_factory=list)  # with compile: the cell's first two steps
    feature_cache: dict[str, Any] | None = None

    @property
    def compile_s(self) -> float | None:
        """torch.compile's first compilation: the first training step's time beyond the second's."""
        if len(self.first_steps_s) < 2:
            return None
        return max(0.0, self.first_steps_s[0] - self.first_steps_s[1])

    @property
    def trained_epochs(self) -> list[dict[str, Any]]:
        """The epochs that trained (not solved or reused stages, not a stage's starting evaluation)."""
        return [e for e in self.epochs if "train_loss" in e]

    @property
    def training_s(self) -> float:
        """Everything it took to train, apart from a reused cell's time: epochs, features, probes, solves."""
        return self.train_s + self.feature_s + self.probe_s + self.fit_s

    @property
    def best_epoch(self) -> int | None:
        """The kept epoch of the last stage that selected one (-1: its starting state), None without selection."""
        return list(self.best.values())[-1]["epoch"] if self.best else None


@dataclass(frozen=True)
class CellFacts:
    """Everything a cell's record holds that the engine measured or decided, as plain values (no model, no
    device, no strategy object): ``results.record.build_record`` lays them out."""

    cfg: CellConfig
    settings: dict[str, Any]  # the effective training settings (a tuned cell's: its chosen trial's)
    # name, label, hparams, in_study, variant (when it has one), log, complete, incomplete_reason
    strategy: dict[str, Any]
    weights: dict[str, Any]
    head: dict[str, Any]
    data: dict[str, Any]
    preprocess: dict[str, Any]
    amp: str | None
    channels_last: bool
    device: str
    task: str
    metrics: dict[str, Any] | None  # val and test
    monitor: str
    majority: dict[str, Any] | None  # the test split's majority-class baseline
    measured: Measurements
    reused_train_s: float
    peak_gpu_allocated_mb: float | None
    peak_gpu_reserved_mb: float | None
    peak_host_rss_mb: float
    peak_host_scope: str
    total_params: int
    data_conversion_s: float
    status: str
    error: str | None
    diverged_epoch: int | None
    started: datetime
    finished: datetime
    tuning: dict[str, Any] | None
