"""Surgical fine-tuning (Lee et al., ICLR 2023): train one chosen block plus the head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medft_bench.errors import MedftError
from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import body_blocks

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


@register_strategy
class Surgical(Strategy):
    """Only one block trains, plus the new head (``ctx.head_names``); everything else is frozen.

    ``block``: an index into the backbone's blocks without the head block (0 = the stem/first block, the
    paper's choice for input-level shifts such as image corruptions; negative indices count back from the
    last block before the head), or any block's name (``ctx.blocks``, e.g. ``layer2`` for ResNet-50). The
    head is the new C-way layer only, not the rest of the partition's last block: VGG-19's pretrained fc6/fc7
    (the ``classifier`` block, 119.6 M parameters) and DenseNet-121's norm5 train only when that block is
    chosen by name. BatchNorm layers of frozen blocks run in eval mode (``frozen_eval``); those of the
    chosen block update their statistics.
    """

    name = "surgical"
    label = "surgical"
    description = "Surgical fine-tuning: one chosen block (default the first) plus the new head train."
    defaults = {"block": 0}
    param_types = {"block": (int, str)}  # an index, or a block's name
    row_params = ("block",)  # one row per block, as Lee et al. report it

    def chosen(self, ctx: CellContext) -> tuple[str, list[str]]:
        body = body_blocks(ctx)
        block = self.params["block"]
        if isinstance(block, str) and not block.lstrip("-").isdigit():
            names = [n for n, _ in ctx.blocks]
            if block not in names:
                raise MedftError(f"surgical: no block {block!r} in {ctx.backbone.name}; blocks: {', '.join(names)}")
            return ctx.blocks[names.index(block)]
        idx = int(block)
        if not -len(body) <= idx < len(body):
            raise MedftError(f"surgical: block index {idx} out of range for the {len(body)} blocks before the head "
                             f"({', '.join(n for n, _ in body)})")
        return body[idx]

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        name, params = self.chosen(ctx)
        return {"block": self.params["block"], "block_name": name, "block_tensors": len(params),
                "head": "the new head layer only"}

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        _, params = self.chosen(ctx)
        return EpochPlan(trainable=frozenset([*params, *ctx.head_names]), norm_mode="frozen_eval")
