"""Sparse tuning: BitFit (Ben Zaken et al., 2022) and normalisation-only tuning, each plus the head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import bias_param_names, norm_param_names

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


@register_strategy
class BitFit(Strategy):
    """Every bias parameter (of conv, linear and normalisation modules) plus the head trains.

    norm_mode ``train``: BatchNorm statistics keep updating, as in the usual CNN BitFit implementations
    (they only switch ``requires_grad`` off); every BatchNorm with a bias trains it anyway. Networks whose
    convolutions have no bias (ResNet, DenseNet) train only the BatchNorm biases and the head.
    """

    name = "bitfit"
    label = "BitFit"
    description = "BitFit: only bias parameters (conv, linear, norm) plus the head train."
    defaults: dict[str, Any] = {}

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {"selects": "every parameter named 'bias' on its module, plus the head", "norm_mode": "train"}

    def check(self, ctx: CellContext) -> str | None:
        if not set(bias_param_names(ctx.model)) - set(ctx.head_names):
            return f"{ctx.backbone.name} has no bias parameters outside the head (BitFit would be linear probing)"
        return None

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset([*bias_param_names(ctx.model), *ctx.head_names]), norm_mode="train")


@register_strategy
class NormOnly(Strategy):
    """The affine parameters of normalisation modules (BatchNorm, GroupNorm, LayerNorm, chosen by module
    type) plus the head train. norm_mode ``train``: the normalisation layers being tuned update their
    statistics too."""

    name = "norm_only"
    label = "norm-only"
    description = "Norm-only tuning: normalisation-layer affine parameters plus the head train."
    defaults: dict[str, Any] = {}

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {"selects": "affine parameters of normalisation modules (by type), plus the head",
                "norm_mode": "train"}

    def check(self, ctx: CellContext) -> str | None:
        if not set(norm_param_names(ctx.model)) - set(ctx.head_names):
            return (f"{ctx.backbone.name} has no normalisation layers with parameters (norm-only tuning would be "
                    "linear probing)")
        return None

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset([*norm_param_names(ctx.model), *ctx.head_names]), norm_mode="train")
