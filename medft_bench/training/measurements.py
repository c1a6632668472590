"""What a cell measures while it trains and evaluates: seconds by kind, images, epochs, trainable sizes, drift."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass, field
from typing import Any

import torch


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host timer measures it (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


_CELL_PEAK = {"armed": False}  # a fresh high-water mark was started for the cell being computed


def reset_host_peak() -> bool:
    """Start a fresh peak of resident memory for the next cell (Linux: writing 5 to ``/proc/self/clear_refs``
    resets the process's VmHWM to its current RSS). False where the system has no such reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        _CELL_PEAK["armed"] = False
        return False
    _CELL_PEAK["armed"] = True
    return True


def host_peak() -> tuple[float, str]:
    """Peak resident memory in MB and what it covers: ``"cell"`` since :func:`reset_host_peak` (VmHWM; the
    memory the process already held when the cell began is included), else ``"process"`` (ru_maxrss: the
    process's peak so far, which only grows with run order). A reset serves one reading."""
    if _CELL_PEAK["armed"]:
        _CELL_PEAK["armed"] = False
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024, "cell"
        except (OSError, ValueError, IndexError):
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024), "process"
