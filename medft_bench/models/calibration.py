"""Calibrating a randomly initialised backbone on training images before anything trains.

Random weights (the smoke tier, ``--weights random``) describe no data, and in eval mode, which every
frozen-feature strategy uses (LP, kNN, LP-FT's first stage, Auto-SNR's and Auto-RGN's ``norm_mode="eval"``),
their activations shrink block after block: a random ResNet-50's pooled features on the smoke images have an
L2 norm of about 0.7, a random VGG-19's (torchvision's fan-out He initialisation, N(0, 0.01) linear layers) an
RMS of about 0.01 per feature. A new head trained with Adam at 1e-3 then cannot leave the majority class in
the smoke tier's 24 steps, whatever the strategy does, and the leaderboard would rank the initialisation.
So with ``weights="random"``, before the head is initialised:

* a network with BatchNorm gets its running statistics estimated on training batches (train mode,
  cumulative average, no gradient): what any network trained from scratch would hold;
* a network without BatchNorm (VGG-19) gets layer-sequential unit-variance scaling (LSUV, Mishkin & Matas,
  "All you need is a good init", ICLR 2016, without its orthonormal pre-initialisation): in forward order,
  each convolution and linear layer of the backbone (not the new head) has its weight and bias divided by
  the standard deviation of its output on one training batch (eval mode), so that the output's variance on
  that batch is 1.

``TrainSettings.random_calibration`` sets the number of training batches for the BatchNorm statistics (LSUV
uses one, as its paper does; 0: keep the initialisation).
Pretrained weights are never touched. What was done is recorded in ``weights.calibration``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medft_bench.data.batches import iterate

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext

def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def calibrate(ctx: CellContext, n_batches: int) -> dict[str, Any] | None:
    """Calibrate ``ctx.model`` (random weights) on ``n_batches`` training batches; return what to record, or
    None when there is nothing to do."""
    if n_batches <= 0:
        return None
    t0 = time.perf_counter()
    found = batch_norms(ctx.model)
    result = _batchnorm_statistics(ctx, n_batches, found) if found else _lsuv(ctx)
    if result is not None:
        result["seconds"] = time.perf_counter() - t0
    return result


def _training_batches(ctx: CellContext, n_batches: int) -> Iterator[torch.Tensor]:
    """The first ``n_batches`` batches of a seeded shuffle of the training split, as model inputs (no
    augmentation), one at a time; a lone image is dropped when there is more than a batch (it has no
    variance)."""
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    bs = ctx.settings.batch_size
    batches = iterate(ctx.data.train, bs, shuffle=True, generator=gen, device=ctx.device,
                      drop_last=len(ctx.data.train) > bs)
    for x, _ in itertools.islice(batches, n_batches):
        yield ctx.to_input(x)


@torch.no_grad()
def _batchnorm_statistics(ctx: CellContext, n_batches: int, layers: list[nn.modules.batchnorm._BatchNorm]
                          ) -> dict[str, Any]:
    momenta = [m.momentum for m in layers]
    was = ctx.model.training
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
    ctx.model.train()
    batches = images = 0
    try:
        for x in _training_batches(ctx, n_batches):
            with ctx.autocast():
                ctx.model(x)
            batches, images = batches + 1, images + len(x)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        ctx.model.train(was)
    return {"method": "batchnorm", "batches": batches, "images": images, "layers": len(layers)}


def lsuv_layers(ctx: CellContext) -> list[nn.Module]:
    """The backbone's convolution and linear layers, the new head excluded."""
    head = set(ctx.backbone.head.modules())
    return [m for m in ctx.model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in head]


@torch.no_grad()
def _lsuv(ctx: CellContext) -> dict[str, Any] | None:
    layers = lsuv_layers(ctx)
    if not layers:
        return None
    scales: list[float] = []

    def rescale(layer: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        # In forward order within one pass: every later layer already sees the rescaled output. Dividing the
        # bias too makes the rescaling exact, so one pass calibrates every layer (LSUV's loop needs one step).
        std = output.double().std(correction=0).item()
        if not std > 0:
            return output
        layer.weight.div_(std)
        if layer.bias is not None:
            layer.bias.div_(std)
        scales.append(std)
        return output / std

    was = ctx.model.training
    ctx.model.eval()  # the features the frozen strategies use; dropout would add noise to the variance
    handles = [m.register_forward_hook(rescale) for m in layers]
    x = next(_training_batches(ctx, 1))
    try:
        ctx.model(x)
    finally:
        for h in handles:
            h.remove()
        ctx.model.train(was)
    return {"method": "lsuv", "batches": 1, "images": len(x), "layers": len(scales),
            "scale_min": min(scales, default=1.0), "scale_max": max(scales, default=1.0)}
