"""Auto-RGN (Lee, Chen, Tajwar, Kumar, Yao, Liang, Finn, ICLR 2023): per-tensor learning rates from the
relative gradient norm, recomputed at the start of every epoch."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import torch

from medft_bench.strategies.base import NORM_MODES, EpochPlan, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import batch_gradients, candidate_names, probe_cut

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


def relative_gradient_norms(ctx: CellContext, names: list[str], n_batches: int = 5, norm_mode: str = "eval"
                            ) -> dict[str, float]:
    """mean over the epoch's first ``n_batches`` batches of ||g_i|| / ||theta_i|| per tensor i of ``names``.

    Tensors whose norm is zero get ``nan`` (the ratio is undefined).
    """
    named = ctx.named_params()
    params = [named[n].detach().float() for n in names]
    theta = torch.stack(torch._foreach_norm(params)) if params else torch.zeros(0)
    total, count = torch.zeros_like(theta), 0
    for grads in batch_gradients(ctx, names, n_batches, norm_mode):
        total += torch.stack(torch._foreach_norm(grads)) / theta
        count += 1
    if count == 0:
        raise ValueError("Auto-RGN needs at least one training batch")
    mean = (total / count).tolist()
    return {n: (float("nan") if t == 0 else v) for n, v, t in zip(names, mean, theta.tolist())}


def rgn_multipliers(ctx: CellContext, names: list[str] | None = None, n_batches: int = 5, norm_mode: str = "eval",
                    norm_params: str = "frozen") -> dict[str, float]:
    """Learning-rate multipliers RGN_i / max_j RGN_j over the pretrained tensors (the largest is exactly 1); the
    new head's tensors get 1.

    Why the maximum leaves the new head out: the reference fine-tuned a pretrained head of the same label space.
    A new head starts near zero, so its ||g|| / ||theta|| is orders of magnitude above every pretrained
    tensor's and, as the maximum, would divide the backbone's learning rates down to about 1e-4 of the base:
    Auto-RGN would be a linear probe. ``names`` defaults to every parameter less normalisation parameters
    (``norm_params="frozen"``). A tensor whose norm is zero (RGN undefined) gets multiplier 1.
    """
    names = candidate_names(ctx, norm_params) if names is None else names
    rgn = relative_gradient_norms(ctx, names, n_batches, norm_mode)
    head = set(ctx.head_names)
    top = max((v for n, v in rgn.items() if v == v and n not in head), default=0.0)
    return {n: (1.0 if n in head or v != v or top <= 0 else v / top) for n, v in rgn.items()}


@register_strategy
class AutoRGN(Strategy):
    """At every epoch start: the gradients of the epoch's first ``n_batches`` (5) training batches give, per
    parameter tensor, RGN = ||g|| / ||theta||, averaged over the batches and divided by the largest; the
    tensor trains at ``lr * RGN / max RGN`` for the epoch, with Adam rebuilt (moments reset) every epoch as
    in the reference code. The probing batches are exactly the epoch's first batches; probing runs the
    model in the plan's modes, steps nothing and leaves no gradients behind.

    Reference-code quirks, decided here and recorded: normalisation-layer parameters (found by module type:
    BatchNorm, GroupNorm, LayerNorm; the reference drops names containing "bn", which misses DenseNet's
    "norm" and VGG-BN's indices) are frozen by default (``norm_params="frozen"``; ``"train"`` gives them
    RGN learning rates too), and the whole network runs in eval mode while probing and training
    (``norm_mode="eval"``: BatchNorm statistics frozen and no dropout, as the reference's ``train_mode: eval``,
    ``anniesch/surgical-finetuning``).
    Tensors with zero norm (RGN undefined) train at multiplier 1. The new head is left out of the maximum and
    trains at multiplier 1 (see ``rgn_multipliers``: the reference's head was pretrained). Each epoch's record
    carries the mean multiplier per block and the tensor with the largest RGN among the pretrained ones.
    """

    name = "auto_rgn"
    label = "Auto-RGN"
    description = "Auto-RGN: per-tensor lr = base lr x relative gradient norm / max, recomputed every epoch."
    in_study = True
    defaults = {"n_batches": 5, "norm_params": "frozen", "norm_mode": "eval"}

    def incomplete(self, ctx: CellContext) -> str | None:
        return probe_cut(min(int(self.params["n_batches"]), ctx.steps_per_epoch))

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {**self.params, "norm_params_by": "module type", "optimizer_reset": "every epoch",
                "normalised_by": "max RGN over the pretrained tensors; the new head at 1",
                "source": "anniesch/surgical-finetuning get_lr_weights (RGN), train_mode: eval"}

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        norm_mode = self.params["norm_mode"]
        if norm_mode not in NORM_MODES:
            raise ValueError(f"norm_mode must be one of {NORM_MODES}, got {norm_mode!r}")
        names = candidate_names(ctx, self.params["norm_params"])
        mult = rgn_multipliers(ctx, names, int(self.params["n_batches"]), norm_mode)
        block_of = {p: b for b, ps in ctx.blocks for p in ps}
        per_block: dict[str, list[float]] = defaultdict(list)
        for n, m in mult.items():
            per_block[block_of.get(n, "?")].append(m)
        body = [n for n in mult if n not in set(ctx.head_names)]
        note = {"rgn_block_mean": {b: sum(v) / len(v) for b, v in per_block.items()},
                "rgn_argmax": max(body, key=mult.__getitem__) if body else None}
        return EpochPlan(trainable=frozenset(names), norm_mode=norm_mode, lr_scale=mult, reset_optimizer=True,
                         note=note)
