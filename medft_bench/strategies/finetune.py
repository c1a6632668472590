"""Full fine-tuning (FT) and linear probing (LP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.registry import register_strategy

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


@register_strategy
class FullFineTuning(Strategy):
    name = "ft"
    description = "Full fine-tuning: every parameter trains with one learning rate."
    in_study = True

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(ctx.param_names), norm_mode="train")


@register_strategy
class LinearProbe(Strategy):
    """The backbone is frozen and runs in eval mode; only the new head trains.

    Because nothing before the head changes, the engine computes the backbone's features once per image
    and trains the head on the cached features (see ``training/features.py``).
    """

    name = "lp"
    description = "Linear probing: frozen backbone in eval mode, only the new head trains."
    in_study = True

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(ctx.head_names), norm_mode="backbone_eval")
