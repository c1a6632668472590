"""LP-FT (Kumar, Raghunathan, Jones, Ma, Liang, ICLR 2022): linear probing, then full fine-tuning."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import TYPE_CHECKING, Any

import torch

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.finetune import LinearProbe
from medft_bench.strategies.registry import register_strategy

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


def head_fingerprint(ctx: CellContext) -> str:
    """sha256 of the head's tensors (names, shapes, bytes): equal heads, equal fingerprints."""
    h = hashlib.sha256()
    for k, v in sorted(ctx.backbone.head.state_dict().items()):
        t = v.detach().float().cpu().contiguous()
        h.update(f"{k}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@register_strategy
class LinearProbeThenFineTune(Strategy):
    """Stage 1 (``lp``): linear probing exactly as the ``lp`` strategy runs it. Stage 2 (``ft``): full
    fine-tuning from the probed head for ``ft_epochs`` at ``lr * ft_lr_scale``, with a fresh optimizer.

    Why stage 1 has the LP cell's budget (``settings.epochs`` at ``settings.lr``, backbone in eval mode,
    head only, the same early stopping) rather than half the FT epochs: then the stage-1 head *is* the LP
    cell's head for the same (dataset, backbone, seed, settings), and a suite that has run ``lp`` reuses
    its head instead of training stage 1 again. Training it is cheap anyway: LP on cached features costs
    one backbone forward per image, the head's epochs are nearly free. Stage 1 runs as stage index 0, like
    ``lp``'s only stage, and the engine seeds every epoch's batch order from (seed, stage index, epoch), so
    a reused head is bit-for-bit the head that stage 1 would train.

    Reuse: when the cell has a results store holding an ok ``lp`` record of this configuration with its
    saved head, stage 1 loads that head and is skipped; ``log["lp_head"]`` says ``"reused"`` (with
    ``log["lp_config_hash"]``) or ``"trained"``. ``log["ft_start_head"]`` is a fingerprint of the head
    stage 2 starts from.

    Stage 2 defaults: ``ft_epochs = max(1, epochs // 2)`` (Kumar et al.'s equal-budget convention gives each
    stage half the FT epochs; the LP half costs next to nothing here) and ``ft_lr_scale = 0.1`` (the paper
    fine-tunes with a smaller learning rate than it probes with). BatchNorm trains normally in stage 2.
    """

    name = "lp_ft"
    description = "Linear probing (the LP cell's head, reused when stored), then full fine-tuning at a lower lr."
    in_study = True
    defaults = {"ft_epochs": None, "ft_lr_scale": 0.1}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._lp = LinearProbe()

    def _ft_epochs(self, ctx: CellContext) -> int:
        given = self.params["ft_epochs"]
        return int(given) if given is not None else max(1, ctx.settings.epochs // 2)

    def _lp_stage(self, ctx: CellContext) -> Stage:
        return dataclasses.replace(self._lp.stages(ctx)[0], name="lp")

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        lp = self._lp_stage(ctx)
        return {"ft_epochs": self._ft_epochs(ctx), "ft_lr_scale": float(self.params["ft_lr_scale"]),
                "ft_lr": ctx.settings.lr * float(self.params["ft_lr_scale"]), "lp_epochs": lp.epochs,
                "lp_lr": lp.lr}

    def stages(self, ctx: CellContext) -> list[Stage]:
        ft = Stage("ft", self._ft_epochs(ctx), ctx.settings.lr * float(self.params["ft_lr_scale"]))
        return [self._lp_stage(ctx), ft]

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        if stage == 0:
            return self._lp.plan(ctx, 0, epoch)
        # Stage 2 starts with a fresh optimizer: no moment state from probing, as with a reused head.
        return EpochPlan(trainable=frozenset(ctx.param_names), norm_mode="train", reset_optimizer=epoch == 0)

    def start_stage(self, ctx: CellContext, stage: int) -> bool:
        if stage == 1:
            self.log["ft_start_head"] = head_fingerprint(ctx)
            return False
        if stage != 0:
            return False
        lp_cfg = ctx.cfg.with_strategy("lp")
        self.log["lp_config_hash"] = lp_cfg.config_hash
        head = ctx.results_dir.load_head(lp_cfg) if ctx.results_dir is not None else None
        if head is None:
            self.log["lp_head"] = "trained"
            return False
        module = ctx.backbone.head
        ref = next(iter(module.parameters()))
        with torch.no_grad():
            module.load_state_dict({k: v.to(device=ref.device) for k, v in head.items()})
        self.log["lp_head"] = "reused"
        self.log["lp"] = {"lp_head": "reused", "lp_config_hash": lp_cfg.config_hash}  # the skipped epoch's entry
        return True
