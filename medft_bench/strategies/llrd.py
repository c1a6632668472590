"""Discriminative learning rates / layer-wise learning-rate decay (ULMFiT; common for ViTs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.registry import register_strategy

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


def block_scales(ctx: CellContext, decay: float) -> dict[str, float]:
    """lr multiplier decay**k per parameter, k = the block's distance from the head block (head: k = 0)."""
    return {p: decay**k for k, (_, ps) in enumerate(reversed(ctx.blocks)) for p in ps}


@register_strategy
class LayerwiseLRDecay(Strategy):
    """Everything trains (BatchNorm in train mode); block k counted from the head (the head block k = 0)
    trains at ``lr * decay**k``. Default ``decay = 1/2.6`` (ULMFiT); 0.65 to 0.75 is typical for ViTs."""

    name = "llrd"
    label = "LLRD"
    description = "Layer-wise lr decay: block k from the head trains at lr x decay^k (decay 1/2.6)."
    defaults = {"decay": 1 / 2.6}

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        decay = float(self.params["decay"])
        return {"decay": decay, "block_scales": {b: decay**k for k, (b, _) in enumerate(reversed(ctx.blocks))}}

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(ctx.param_names), norm_mode="train",
                         lr_scale=block_scales(ctx, float(self.params["decay"])))
