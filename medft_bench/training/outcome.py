"""A cell's outcome as the engine returns it (:class:`CellRun`: the live model and strategy), and the plain facts
a record is built from read off it once (:meth:`CellRun.facts`, peak memory included): a
:class:`~medft_bench.results.facts.CellFacts`, defined with the records (``results.record.build_record`` is a pure
function of them), so that the records layer never imports the engine."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import torch

from medft_bench.metrics import majority_baseline
from medft_bench.results.facts import CellFacts, Measurements
from medft_bench.strategies.base import Strategy
from medft_bench.training.measurements import host_peak

if TYPE_CHECKING:
    import numpy as np

    from medft_bench.config import CellConfig
    from medft_bench.training.context import CellContext


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

    def model_state(self) -> dict[str, torch.Tensor] | None:
        """The kept network's weights on the CPU (``--save-model``: kept next to the record); None unless ok, and
        for a strategy that predicts without training a network (kNN: its head was never trained)."""
        if self.status != "ok" or type(self.strategy).predict is not Strategy.predict:
            return None
        return {k: v.detach().cpu().clone() for k, v in self.ctx.model.state_dict().items()}

    def facts(self) -> CellFacts:
        """What the record says about this run, read off the live objects now: the cell's peak memory is read here,
        at its end (``measurements.host_peak``, CUDA's peak since the cell reset it)."""
        ctx, strategy, dev = self.ctx, self.strategy, self.ctx.device
        data, gpu = ctx.data, self.ctx.device.type == "cuda"
        peak_mb, peak_scope = host_peak()
        variant = strategy.variant()
        incomplete = strategy.incomplete(ctx)
        return CellFacts(
            cfg=self.cfg, settings=asdict(ctx.settings),
            strategy={"name": strategy.name, "label": strategy.display_label(), "hparams": strategy.hparams(ctx),
                      "in_study": strategy.in_study, **({"variant": variant} if variant else {}),
                      "log": strategy.log, "complete": incomplete is None, "incomplete_reason": incomplete},
            weights=dict(ctx.backbone.weights), head=dict(ctx.head_init),
            data={**data.identity, "name": data.name, "task": data.task, "n_classes": data.n_classes,
                  "n_channels": data.n_channels, "modality": data.modality, "image_size": data.image_size,
                  "splits": {s: len(data.split(s)) for s in ("train", "val", "test")},
                  "train_subset": data.train_subset},
            preprocess=ctx.preprocess.describe(),
            amp=str(ctx.amp_dtype).replace("torch.", "") if ctx.amp_dtype else None,
            channels_last=ctx.channels_last, device=str(dev), task=data.task, metrics=self.metrics,
            monitor=self.monitor,
            majority=None if self.metrics is None else majority_baseline(data.task, data.test.labels.numpy()),
            measured=self.measured, reused_train_s=strategy.reused_train_s,
            peak_gpu_allocated_mb=torch.cuda.max_memory_allocated(dev) / 2**20 if gpu else None,
            peak_gpu_reserved_mb=torch.cuda.max_memory_reserved(dev) / 2**20 if gpu else None,
            peak_host_rss_mb=peak_mb, peak_host_scope=peak_scope,
            total_params=sum(p.numel() for p in ctx.model.parameters()), data_conversion_s=data.conversion_s,
            status=self.status, error=self.error, diverged_epoch=self.diverged_epoch, started=self.started,
            finished=self.finished, tuning=self.tuning)
