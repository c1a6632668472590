"""Gradual unfreezing (GU) in both directions: last-to-first (ULMFiT) and first-to-last."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import body_blocks, head_block_names

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


class _GradualUnfreezing(Strategy):
    """Start with only the head block trainable; every ``epochs_per_block`` epochs unfreeze one more block.

    Phase k (k = 0, 1, ..., n_blocks - 1) trains the head block plus k backbone blocks; the last phase trains
    everything and lasts until the epoch budget ends. The default is ULMFiT's schedule (Howard & Ruder 2018):
    one epoch per block (``epochs_per_block=1``), then everything until the budget ends (30 epochs on
    ResNet-50's 6 blocks: everything trainable from epoch 5, for 25 epochs). With fewer epochs than blocks
    the budget ends before the last blocks unfreeze (``log["complete"]`` says so). ``log["schedule"]`` lists
    the epoch at which each block unfreezes.

    One stage with ``min_epochs`` = the first all-unfrozen epoch, what the schedule needs and no more:
    early stopping cannot end the run before every block has trained (the learning rate follows one cosine
    over the whole budget). The head block is
    the partition's last block, the unit the study's partitions define: for ResNet-50 the new fc, for
    DenseNet-121 norm5 with the classifier, for VGG-19 the whole three-layer classifier (the pretrained
    fc6/fc7 train from the first epoch, with the new head). Frozen blocks' BatchNorm layers run in eval mode
    (``frozen_eval``); optimizer moments of blocks that keep training are kept when a block is added.
    """

    direction: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {"epochs_per_block": 1}

    def _order(self, ctx: CellContext) -> list[tuple[str, list[str]]]:
        body = body_blocks(ctx)
        return body[::-1] if self.direction == "last_first" else body

    def _length(self, ctx: CellContext) -> int:
        return max(1, int(self.params["epochs_per_block"]))

    def _min_epochs(self, ctx: CellContext) -> int:
        return min(ctx.settings.epochs, self._length(ctx) * len(self._order(ctx)) + 1)

    def phase(self, ctx: CellContext, epoch: int) -> int:
        """How many backbone blocks are unfrozen in ``epoch``."""
        return min(epoch // self._length(ctx), len(self._order(ctx)))

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {"epochs_per_block": self._length(ctx), "direction": self.direction, "n_blocks": len(ctx.blocks),
                "order": [name for name, _ in self._order(ctx)], "min_epochs": self._min_epochs(ctx)}

    def stages(self, ctx: CellContext) -> list[Stage]:
        s = ctx.settings
        length, order = self._length(ctx), self._order(ctx)
        self.log["schedule"] = [{"epoch": (k + 1) * length, "unfreeze": name} for k, (name, _) in enumerate(order)
                                if (k + 1) * length < s.epochs]
        self.log["complete"] = length * len(order) < s.epochs
        return [Stage("gu", s.epochs, s.lr, min_epochs=self._min_epochs(ctx))]

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        k = self.phase(ctx, epoch)
        unfrozen = self._order(ctx)[:k]
        names = set(head_block_names(ctx))
        for _, ps in unfrozen:
            names.update(ps)
        return EpochPlan(trainable=frozenset(names), norm_mode="frozen_eval",
                         note={"gu_phase": k, "unfrozen_blocks": [n for n, _ in unfrozen]})


@register_strategy
class GradualUnfreezingLastFirst(_GradualUnfreezing):
    __doc__ = "Last-to-first (ULMFiT order): the block nearest the head unfreezes first.\n\n" + (
        _GradualUnfreezing.__doc__ or "")
    name = "gu_last_first"
    label = "GU last-to-first"
    description = "Gradual unfreezing, head first, then one block per phase from the head towards the stem."
    in_study = True
    direction = "last_first"


@register_strategy
class GradualUnfreezingFirstLast(_GradualUnfreezing):
    __doc__ = "First-to-last: the stem unfreezes first; the head always trains.\n\n" + (
        _GradualUnfreezing.__doc__ or "")
    name = "gu_first_last"
    label = "GU first-to-last"
    description = "Gradual unfreezing, head always trains, one block per phase from the stem towards the head."
    in_study = True
    direction = "first_last"
