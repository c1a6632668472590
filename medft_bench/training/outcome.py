"""A cell's outcome as the engine returns it: typed, before it becomes a record (``results.record``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

    from medft_bench.config import CellConfig
    from medft_bench.strategies.base import Strategy
    from medft_bench.training.context import CellContext
    from medft_bench.training.measurements import Measurements


@dataclass
class CellRun:
    """What running one cell produced: the context and strategy it ran with (the kept model in ``ctx``), what
    it measured, its metrics and how it ended. ``tuning``: a tuned cell's sweep, for the record."""

    cfg: CellConfig
    ctx: CellContext
    strategy: Strategy
    measured: Measurements
    metrics: dict[str, Any] | None
    status: str  # ok | diverged | failed
    error: str | None
    diverged_epoch: int | None
    started: datetime
    finished: datetime
    monitor: str
    tuning: dict[str, Any] | None = None
    scores: dict[str, np.ndarray] | None = None  # the kept model's probabilities per split (ok cells only)

    def head_state(self) -> dict[str, torch.Tensor] | None:
        """The trained head's weights on the CPU (kept next to the record, for LP-FT's reuse); None unless ok."""
        if self.status != "ok":
            return None
        return {k: v.detach().cpu().clone() for k, v in self.ctx.backbone.head.state_dict().items()}
