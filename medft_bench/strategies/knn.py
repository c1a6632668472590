"""kNN probe (as in MedMNIST+): k nearest training neighbours on frozen pre-logit embeddings, no training."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.registry import register_strategy

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


def knn_scores(train_emb: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, k: int, n_classes: int,
               multi_label: bool, chunk: int = 1024) -> np.ndarray:
    """Vote fractions of the ``k`` nearest training embeddings (cosine similarity) for each query row.

    Single-label: (N, n_classes), the fraction of neighbours of each class. Multi-label: (N, L), the fraction
    of neighbours positive for each label. Distance: cosine (dot products of L2-normalised embeddings); ties
    in distance are broken by ``torch.topk``'s order.
    """
    k = min(k, len(train_emb))
    tr = torch.nn.functional.normalize(train_emb.float(), dim=1)
    lab = train_labels.to(tr.device)
    out = []
    for start in range(0, len(query), chunk):
        q = torch.nn.functional.normalize(query[start : start + chunk].float().to(tr.device), dim=1)
        idx = (q @ tr.T).topk(k, dim=1).indices  # (n, k)
        if multi_label:
            out.append(lab.float()[idx].mean(1))
        else:
            onehot = torch.nn.functional.one_hot(lab.long().view(-1)[idx], n_classes).float()
            out.append(onehot.mean(1))
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, n_classes), dtype=np.float32)


@register_strategy
class KNNProbe(Strategy):
    """Frozen backbone (eval mode, no training): each val/test image gets the labels of its ``k`` (11)
    nearest training images, by cosine similarity of pre-logit embeddings (the head's input, L2-normalised),
    as a majority vote. Scores are the vote fractions: per class for single-label tasks (argmax = the
    majority class, ties to the lower class index), per label (the fraction of neighbours positive) for
    multi-label tasks. k is capped at the training-set size."""

    name = "knn"
    label = "kNN"
    description = "kNN probe: 11 nearest training neighbours on frozen embeddings (cosine), majority vote."
    defaults = {"k": 11}
    lr_grid = ()  # nothing trains

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {"k": min(int(self.params["k"]), len(ctx.data.train)), "distance": "cosine (L2-normalised)",
                "vote": "uniform", "embedding": "pre-logits"}

    def stages(self, ctx: CellContext) -> list[Stage]:
        return []

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(), norm_mode="backbone_eval")

    def predict(self, ctx: CellContext) -> dict[str, np.ndarray]:
        from medft_bench.training.features import FeatureCache

        # The engine's cache: features come from disk when an LP, LP-FT or kNN cell of the same data and
        # backbone has taken them already, and are taken once per image otherwise.
        cache = ctx.feature_cache if ctx.feature_cache is not None else FeatureCache(ctx)
        train = cache.get("train")
        self.log["embedding_dim"] = int(train.shape[1])
        k = int(self.params["k"])
        return {split: knn_scores(train, ctx.data.train.labels, cache.get(split), k, ctx.data.n_classes,
                                  ctx.data.multi_label) for split in ("val", "test")}
