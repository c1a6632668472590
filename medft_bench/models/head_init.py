"""How a new classification head starts: neutral, so that the first loss is about ln(C).

A default ``nn.Linear`` on unnormalised pretrained features can start with a loss many times ln(C) (11.7
for four classes was seen with a real ImageNet ResNet), and a few epochs of Adam do not recover from it.
BiT (Kolesnikov et al., 2020) zero-initialises the head for transfer. A zero head has a catch for the
strategies that look at gradients before the first step: it passes no gradient to the backbone (the
backbone's gradient is ``W^T (p - y) = 0``) and its own relative gradient norm is undefined (``||W|| = 0``),
so Auto-RGN's and Auto-SNR's first probe would see an all-zero backbone. ``scaled`` (the default) keeps the
head neutral without that: random normal weights scaled so that the logits' standard deviation on the
training features is ``LOGIT_STD`` (0.01), bias zero; the first loss is then ln(C) to within about 1e-4.

Modes (``TrainSettings.head_init``, recorded): ``scaled``, ``zero`` (BiT), ``default`` (the library's).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from medft_bench.data.batches import iterate

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext

HEAD_INITS = ("scaled", "zero", "default")
LOGIT_STD = 0.01
PROBE_BATCH = 64  # training images whose features set the scale


@torch.no_grad()
def feature_rms_norm(ctx: CellContext, n: int = PROBE_BATCH) -> float:
    """Root mean square of the L2 norms of the head's inputs over ``n`` training images (a seeded sample,
    eval mode, no augmentation)."""
    model = ctx.model
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    try:
        images, _ = next(iterate(ctx.data.train, n, shuffle=True, generator=gen, device=ctx.device))
        with ctx.autocast():
            feats = ctx.backbone.features(ctx.to_input(images)).float()
    finally:
        model.train(was)
    return float(feats.pow(2).sum(1).mean().sqrt())


@torch.no_grad()
def init_head(ctx: CellContext) -> dict[str, Any]:
    """Initialise ``ctx.backbone.head`` as ``ctx.settings.head_init`` says; return what to record."""
    mode = ctx.settings.head_init
    if mode not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {mode!r}")
    if mode == "default":
        return {"init": mode}
    weights = [p for n, p in ctx.backbone.head.named_parameters() if n.rsplit(".", 1)[-1] != "bias"]
    biases = [p for n, p in ctx.backbone.head.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
    for b in biases:
        b.zero_()
    if mode == "zero":
        for w in weights:
            w.zero_()
        return {"init": mode}
    t0 = time.perf_counter()
    rms = feature_rms_norm(ctx)
    std = LOGIT_STD / rms if rms > 0 and math.isfinite(rms) else 0.0
    gen = torch.Generator().manual_seed(ctx.cfg.seed + 1)
    for w in weights:
        w.copy_(torch.randn(w.shape, generator=gen) * std)
    return {"init": mode, "logit_std": LOGIT_STD, "feature_rms_norm": rms, "weight_std": std,
            "seconds": time.perf_counter() - t0}
