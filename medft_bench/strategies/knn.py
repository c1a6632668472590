"""kNN probe (as in MedMNIST+): k nearest training neighbours on frozen pre-logit embeddings, no training.

MedMNIST+ (Doerrich et al. 2025) votes among the 11 nearest training embeddings by scikit-learn's
``NearestNeighbors`` with its default metric, the Euclidean distance on the raw embedding: that is the default
here (``distance="euclidean"``); ``distance="cosine"`` ranks by cosine similarity (L2-normalised embeddings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.training.features import FeatureCache

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


DISTANCES = ("euclidean", "cosine")


def knn_scores(train_emb: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, k: int, n_classes: int,
               multi_label: bool, chunk: int = 1024, distance: str = "euclidean") -> np.ndarray:
    """Vote fractions of the ``k`` nearest training embeddings for each query row.

    Single-label: (N, n_classes), the fraction of neighbours of each class. Multi-label: (N, L), the fraction
    of neighbours positive for each label. ``distance``: ``euclidean`` on the raw embeddings (float64, so that
    the ranking is the exact distances'), or ``cosine`` (dot products of L2-normalised embeddings); ties in
    distance are broken by ``torch.topk``'s order.
    """
    if distance not in DISTANCES:
        raise ValueError(f"unknown kNN distance {distance!r}; use one of {', '.join(DISTANCES)}")
    k = min(k, len(train_emb))
    if distance == "cosine":
        tr = torch.nn.functional.normalize(train_emb.float(), dim=1)
    else:
        tr = train_emb.double()
        sq = tr.pow(2).sum(1)
    lab = train_labels.to(tr.device)
    out = []
    for start in range(0, len(query), chunk):
        q = query[start : start + chunk].to(tr.device)
        if distance == "cosine":
            score = torch.nn.functional.normalize(q.float(), dim=1) @ tr.T
        else:  # -||q - t||^2 up to the query's own norm, which does not change its ranking
            score = 2 * q.double() @ tr.T - sq
        idx = score.topk(k, dim=1).indices  # (n, k)
        if multi_label:
            out.append(lab.float()[idx].mean(1))
        else:
            onehot = torch.nn.functional.one_hot(lab.long().view(-1)[idx], n_classes).float()
            out.append(onehot.mean(1))
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, n_classes), dtype=np.float32)


@register_strategy
class KNNProbe(Strategy):
    """Frozen backbone (eval mode, no training): each val/test image gets the labels of its ``k`` (11)
    nearest training images among the pre-logit embeddings (the head's input), by Euclidean distance as in
    MedMNIST+ (``distance="cosine"``: cosine similarity), as a majority vote. Scores are the vote fractions:
    per class for single-label tasks (argmax = the majority class, ties to the lower class index), per label
    (the fraction of neighbours positive) for multi-label tasks. k is capped at the training-set size."""

    name = "knn"
    label = "kNN"
    description = "kNN probe: 11 nearest training neighbours on frozen embeddings (Euclidean), majority vote."
    defaults = {"k": 11, "distance": "euclidean"}
    lr_grid = ()  # nothing trains

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        distance = {"euclidean": "euclidean (raw embeddings)", "cosine": "cosine (L2-normalised)"}
        return {"k": min(int(self.params["k"]), len(ctx.data.train)), "distance": distance[self.params["distance"]],
                "vote": "uniform", "embedding": "pre-logits"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["distance"] not in DISTANCES:  # refused before any cell runs
            raise ValueError(f"kNN distance must be one of {', '.join(DISTANCES)}, got {self.params['distance']!r}")
        if self.params["k"] < 1:  # k=0 voted over no neighbour (NaN scores), k=-1 failed inside torch.topk
            raise ValueError(f"kNN k must be a whole number >= 1 (the neighbours that vote), got {self.params['k']!r}")

    def stages(self, ctx: CellContext) -> list[Stage]:
        return []

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(), norm_mode="backbone_eval")

    def predict(self, ctx: CellContext) -> dict[str, np.ndarray]:
        # The engine's cache: features come from disk when an LP, LP-FT or kNN cell of the same data and
        # backbone has taken them already, and are taken once per image otherwise.
        cache = ctx.feature_cache if ctx.feature_cache is not None else FeatureCache(ctx)
        train = cache.get("train")
        self.log["embedding_dim"] = int(train.shape[1])
        k = int(self.params["k"])
        return {split: knn_scores(train, ctx.data.train.labels, cache.get(split), k, ctx.data.n_classes,
                                  ctx.data.multi_label, distance=self.params["distance"]) for split in ("val", "test")}
