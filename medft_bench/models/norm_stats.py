"""BatchNorm statistics for a randomly initialised backbone.

A fresh network's BatchNorm layers hold running statistics (mean 0, variance 1) that describe no data. In eval
mode, which every frozen-feature strategy uses (LP, kNN, LP-FT's first stage, Auto-SNR's and Auto-RGN's
``norm_mode="eval"``), they let activations shrink block after block: a random ResNet-50's pooled features on
the smoke tier's images have an L2 norm of about 0.7 (30 once the statistics are estimated), and a new head
trained with Adam at 1e-3 cannot leave the majority class in the smoke tier's 24 steps, whatever the strategy
does. So with ``weights="random"`` the running statistics are first estimated on training images (a forward
pass in train mode, cumulative average, no gradient): what any network trained from scratch would hold.
Pretrained weights keep their own statistics; a backbone without BatchNorm (VGG-19) is unchanged.
``TrainSettings.random_norm_stats`` sets the number of training batches (0: keep the initial statistics).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medft_bench.data.batches import iterate

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def estimate_norm_stats(ctx: CellContext, n_batches: int) -> dict[str, Any] | None:
    """Replace the BatchNorm running statistics of ``ctx.model`` with those of ``n_batches`` training batches
    (a seeded order, no augmentation); return what to record, or None when there is nothing to estimate."""
    layers = batch_norms(ctx.model)
    if n_batches <= 0 or not layers:
        return None
    t0 = time.perf_counter()
    momenta = [m.momentum for m in layers]
    was = ctx.model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
    ctx.model.train()
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    images = batches = 0
    bs = ctx.settings.batch_size
    try:
        # drop_last: a batch of one image has no variance to estimate
        for x, _ in iterate(ctx.data.train, bs, shuffle=True, generator=gen, device=ctx.device,
                            drop_last=len(ctx.data.train) > bs):
            if batches == n_batches:
                break
            with ctx.autocast():
                ctx.model(ctx.to_input(x))
            images, batches = images + len(x), batches + 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        ctx.model.train(was)
    return {"batches": batches, "images": images, "layers": len(layers), "seconds": time.perf_counter() - t0}
