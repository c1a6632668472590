"""Frozen-backbone features, computed once per image and reused while only the head trains."""

from __future__ import annotations

import torch

from medft_bench.data.batches import iterate
from medft_bench.training.context import CellContext


@torch.inference_mode()
def extract(ctx: CellContext, split: str) -> torch.Tensor:
    """Pre-logit embeddings of every image of ``split`` (model in eval mode, no augmentation), float32."""
    model = ctx.model
    was_training = model.training
    model.eval()
    out = []
    try:
        for images, _ in iterate(ctx.data.split(split), ctx.settings.eval_batch_size, device=ctx.device):
            with ctx.autocast():
                out.append(ctx.backbone.features(ctx.to_input(images)).float())
    finally:
        model.train(was_training)
    return torch.cat(out)


class FeatureCache:
    """Per-cell cache of features by split; valid while nothing before the head changes."""

    def __init__(self, ctx: CellContext) -> None:
        self.ctx = ctx
        self._feats: dict[str, torch.Tensor] = {}

    def get(self, split: str) -> torch.Tensor:
        if split not in self._feats:
            self._feats[split] = extract(self.ctx, split)
        return self._feats[split]

    def clear(self) -> None:
        self._feats.clear()
