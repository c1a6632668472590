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
def head_features(ctx: CellContext, n: int = PROBE_BATCH) -> torch.Tensor:
    """The head's inputs, (n, D) float, for ``n`` training images (a seeded sample, eval mode, no augmentation)."""
    model = ctx.model
    was = model.training
    model.eval()
    gen = torch.Generator().manual_seed(ctx.cfg.seed)
    try:
        images, _ = next(iterate(ctx.data.train, n, shuffle=True, generator=gen, device=ctx.device))
        with ctx.autocast():
            return ctx.backbone.features(ctx.to_input(images)).float().flatten(1)
    finally:
        model.train(was)


def feature_stats(feats: torch.Tensor) -> dict[str, float | None]:
    """What the head starts from: ``feature_rms_norm``, the root mean square of the rows' L2 norms (it sets the
    scaled init), and ``feature_cosine``, the mean cosine similarity between two different images' features.

    A cosine near 1 means every image maps to nearly the same direction and the classes live in a small
    difference on top of it: deep ReLU networks without normalisation do that at random initialisation (the
    correlation between two inputs' activations grows towards 1 with depth; Poole et al. 2016, Schoenholz et
    al. 2017). Random VGG-19 on the smoke tier: 0.98 (ResNet-50 and DenseNet-121, whose BatchNorm re-centres
    each layer: 0.32 and 0.33). A training step that shifts all images alike by more than that difference
    erases it, which is why such a network blows up at learning rates other backbones take (docs/strategies.md).
    """
    rms = float(feats.pow(2).sum(1).mean().sqrt())
    n = feats.shape[0]
    if n < 2:
        return {"feature_rms_norm": rms, "feature_cosine": None}
    unit = torch.nn.functional.normalize(feats.double(), dim=1)
    gram = unit @ unit.T
    cosine = (gram.sum() - gram.diagonal().sum()) / (n * (n - 1))
    return {"feature_rms_norm": rms, "feature_cosine": float(cosine)}


@torch.no_grad()
def init_head(ctx: CellContext) -> dict[str, Any]:
    """Initialise ``ctx.backbone.head`` as ``ctx.settings.head_init`` says; return what to record, with the
    head's input features described by :func:`feature_stats` (every mode)."""
    mode = ctx.settings.head_init
    if mode not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {HEAD_INITS}, got {mode!r}")
    t0 = time.perf_counter()
    stats = feature_stats(head_features(ctx))
    done: dict[str, Any] = {"init": mode, **stats}
    if mode != "default":
        weights = [p for n, p in ctx.backbone.head.named_parameters() if n.rsplit(".", 1)[-1] != "bias"]
        for p in ctx.backbone.head.parameters():
            p.zero_()  # the biases; the weights too, for "zero"
        if mode == "scaled":
            rms = float(stats["feature_rms_norm"] or 0.0)
            std = LOGIT_STD / rms if rms > 0 and math.isfinite(rms) else 0.0
            gen = torch.Generator().manual_seed(ctx.cfg.seed + 1)
            for w in weights:
                w.copy_(torch.randn(w.shape, generator=gen) * std)
            done.update(logit_std=LOGIT_STD, weight_std=std)
    done["seconds"] = time.perf_counter() - t0
    return done
