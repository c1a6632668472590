"""Gradual unfreezing (GU) in both directions: last-to-first (ULMFiT) and first-to-last."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import body_blocks, head_block_names

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


class _GradualUnfreezing(Strategy):
    """Start with only the head block trainable, then unfreeze one more block per phase until all train.

    Phase k (k = 0, 1, ..., n) trains the head block plus k of the n backbone blocks; the last phase trains
    everything and lasts until the budget ends. The schedule is defined in optimizer steps (the budget's unit):
    with enough epochs it is ULMFiT's (Howard & Ruder 2018), ``epochs_per_block`` epochs per block (default 1),
    then everything until the budget ends (30 epochs on ResNet-50's 6 blocks: everything trainable from epoch 5,
    for 25 epochs). With fewer epochs than that needs (the real tier: 3 epochs, EfficientNet-Lite0's 8 body
    blocks), the n + 1 phases share the run's steps equally (the last gets the remainder), so a block may
    unfreeze inside an epoch and every block trains before the budget ends: the method completes instead of
    being cut to a probe of its first blocks. ``log["schedule"]`` lists the step (and epoch) at which each
    block unfreezes; ``log["complete"]`` is False only when the run has fewer steps than phases.

    One stage with ``min_epochs`` = the epoch in which the last phase begins (counted from 1): early stopping
    cannot end the run before every block has trained, and no checkpoint before that epoch can be kept
    (``first_candidate``): a checkpoint with blocks still frozen is another method. The learning rate follows
    one cosine over the whole budget. The head block is the partition's last block, the unit the study's
    partitions define: for ResNet-50 the new fc, for DenseNet-121 norm5 with the classifier, for VGG-19 the
    whole three-layer classifier (the pretrained fc6/fc7 train from the first epoch, with the new head). Frozen
    blocks' BatchNorm layers run in eval mode (``frozen_eval``); optimizer moments of blocks that keep training
    are kept when a block is added.
    """

    direction: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {"epochs_per_block": 1}
    version = 2  # 2: phases in steps, complete within any budget; no checkpoint before the last phase

    def _order(self, ctx: CellContext) -> list[tuple[str, list[str]]]:
        body = body_blocks(ctx)
        return body[::-1] if self.direction == "last_first" else body

    def _length(self, ctx: CellContext) -> int:
        return max(1, int(self.params["epochs_per_block"]))

    def unfreeze_steps(self, ctx: CellContext) -> list[int]:
        """The step of the run (0-based, over the stage) from which each block of the order trains."""
        n, per_epoch, epochs = len(self._order(ctx)), ctx.steps_per_epoch, ctx.settings.epochs
        length = self._length(ctx)
        if length * n < epochs:  # ULMFiT's schedule fits, with at least one all-unfrozen epoch
            return [(k + 1) * length * per_epoch for k in range(n)]
        phase = max(1, epochs * per_epoch // (n + 1))  # n + 1 equal phases; the last takes the remainder
        return [(k + 1) * phase for k in range(n)]

    def _last_epoch_begun(self, ctx: CellContext) -> int:
        """The epoch (0-based) in which the last phase begins, capped at the budget's last epoch."""
        steps = self.unfreeze_steps(ctx)
        return min(ctx.settings.epochs - 1, steps[-1] // ctx.steps_per_epoch) if steps else 0

    def _complete(self, ctx: CellContext) -> bool:
        steps = self.unfreeze_steps(ctx)
        return not steps or steps[-1] < ctx.settings.epochs * ctx.steps_per_epoch

    def phase(self, ctx: CellContext, epoch: int, step: int = 0) -> int:
        """How many backbone blocks are unfrozen at ``step`` of ``epoch``."""
        at = epoch * ctx.steps_per_epoch + step
        return sum(1 for u in self.unfreeze_steps(ctx) if u <= at)

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {"epochs_per_block": self._length(ctx), "direction": self.direction, "n_blocks": len(ctx.blocks),
                "order": [name for name, _ in self._order(ctx)], "min_epochs": self._last_epoch_begun(ctx) + 1,
                "steps_per_epoch": ctx.steps_per_epoch, "unfreeze_steps": self.unfreeze_steps(ctx)}

    def stages(self, ctx: CellContext) -> list[Stage]:
        s, per_epoch = ctx.settings, ctx.steps_per_epoch
        total = s.epochs * per_epoch
        self.log["schedule"] = [{"step": u, "epoch": u // per_epoch, "unfreeze": name}
                                for u, (name, _) in zip(self.unfreeze_steps(ctx), self._order(ctx)) if u < total]
        self.log["complete"] = self._complete(ctx)
        last = self._last_epoch_begun(ctx)
        return [Stage("gu", s.epochs, s.lr, min_epochs=last + 1, first_candidate=last)]

    def _plan_at(self, ctx: CellContext, k: int) -> EpochPlan:
        unfrozen = self._order(ctx)[:k]
        names = set(head_block_names(ctx))
        for _, ps in unfrozen:
            names.update(ps)
        return EpochPlan(trainable=frozenset(names), norm_mode="frozen_eval",
                         note={"gu_phase": k, "unfrozen_blocks": [n for n, _ in unfrozen]})

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        per_epoch = ctx.steps_per_epoch
        first = epoch * per_epoch
        start = self.phase(ctx, epoch)
        # Blocks that unfreeze inside this epoch: a plan from their step on.
        inside = [(u - first, k + 1) for k, u in enumerate(self.unfreeze_steps(ctx)) if first < u < first + per_epoch]
        plan = self._plan_at(ctx, start)
        if not inside:
            return plan
        note = {**plan.note, "gu_phase_end": inside[-1][1],
                "unfreeze_at_step": {self._order(ctx)[k - 1][0]: step for step, k in inside}}
        return replace(plan, note=note, switches=tuple((step, self._plan_at(ctx, k)) for step, k in inside))

    def incomplete(self, ctx: CellContext) -> str | None:
        if self._complete(ctx):
            return None
        return (f"{ctx.settings.epochs * ctx.steps_per_epoch} steps for {len(self._order(ctx)) + 1} phases: "
                "not every block unfreezes")


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
