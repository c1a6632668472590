"""The test set's sampling error: a percentile bootstrap over test images, from the predictions kept beside each
record (:mod:`medft_bench.results.predictions`).

The seed-level statistics (:mod:`stats`) take the test set as fixed: they say how much training noise moves a
score, not how much another sample of patients would. This module adds the second source. Each resample draws
every dataset's test images with replacement, and the same draw serves every strategy and seed evaluated on
that dataset. This pairing is what makes a difference between two strategies narrower than either score's
interval. A strategy's score under a draw is computed as the leaderboard computes it: the metric per (dataset,
seed), a failed seed at its chance score, then the mean over seeds and datasets. The interval is the 2.5th to
97.5th percentile of ``B`` draws from a fixed random state, so a page is the same every time it is built.

Bootstrapped metrics: AUC (the ranking metric: medmnist's, a class's ROC AUC as the Mann-Whitney statistic with
each image weighted by how often the draw took it, ties counting one half; the mean over classes for multi-class
and multi-label tasks), balanced accuracy and accuracy (beside it). With every image drawn once each is exactly
what :func:`medft_bench.metrics.compute_metrics` records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medft_bench.errors import RecordError
from medft_bench.leaderboard.stats import CI_LEVEL
from medft_bench.results import predictions
from medft_bench.vocabulary import MULTI_LABEL

if TYPE_CHECKING:
    from medft_bench.leaderboard.load import Run

B = 2000
SEED = 20240501
SUPPORTED = ("auc", "balanced_acc", "acc")
_CHUNK = 250  # resamples per block: bounds memory at _CHUNK x images


@dataclass(frozen=True)
class Predicted:
    """One (dataset, seed) cell's test labels and probabilities."""

    labels: np.ndarray
    scores: np.ndarray


Source = Predicted | float  # a cell's predictions, or the constant a failed seed scores (its chance score)


def predicted_labels(task: str, scores: np.ndarray) -> np.ndarray:
    """The predicted class as :func:`medft_bench.metrics.compute_metrics` takes it (binary: P(positive) > 0.5)."""
    return (scores[:, -1] > 0.5).astype(np.int64) if task == "binary-class" else scores.argmax(1)


def weights(n: int, b: int = B, seed: int = SEED) -> np.ndarray:
    """``b`` resamples of ``n`` images as counts (b, n; float32, exact): how often each image is drawn."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float32)


def metric_draws(metric: str, task: str, cell: Predicted, w: np.ndarray) -> np.ndarray:
    """The metric of ``cell`` under each resample (rows of ``w``); with ``w`` all ones, the metric itself."""
    if metric not in SUPPORTED or (task == MULTI_LABEL and metric != "auc"):
        raise ValueError(f"{metric} on a {task} task is not bootstrapped")
    if metric == "auc":
        return _auc_draws(task, cell, w)
    y = cell.labels.reshape(-1).astype(np.int64)
    correct = (predicted_labels(task, cell.scores) == y).astype(np.float64)
    onehot = np.eye(cell.scores.shape[1])[y]
    out = np.empty(len(w))
    for lo in range(0, len(w), _CHUNK):  # in float64: the counts are exact, the ratios as sklearn's
        block = w[lo:lo + _CHUNK].astype(np.float64)
        if metric == "acc":
            out[lo:lo + _CHUNK] = (block @ correct) / block.sum(1)
            continue
        counts, hits = block @ onehot, block @ (onehot * correct[:, None])
        present = counts > 0  # sklearn's balanced accuracy: the mean recall over the classes in y_true
        recall = np.divide(hits, counts, out=np.zeros_like(hits), where=present)
        out[lo:lo + _CHUNK] = recall.sum(1) / present.sum(1)
    return out


def _auc_draws(task: str, cell: Predicted, w: np.ndarray) -> np.ndarray:
    """medmnist's AUC under each resample: binary, P(positive) against the label; multi-class, the mean over
    classes of one-vs-rest; multi-label, the mean over labels. A class without both outcomes in a draw is left
    out of that draw's mean, as :func:`medft_bench.metrics.compute_metrics` leaves it out."""
    scores = cell.scores
    if task == MULTI_LABEL:
        columns = [(cell.labels[:, j].astype(bool), scores[:, j]) for j in range(scores.shape[1])]
    else:
        y = cell.labels.reshape(-1).astype(np.int64)
        columns = ([(y == 1, scores[:, -1])] if task == "binary-class"
                   else [(y == c, scores[:, c]) for c in range(scores.shape[1])])
    per_class = np.stack([_binary_auc_draws(pos, s, w) for pos, s in columns])
    with np.errstate(invalid="ignore"):
        valid = ~np.isnan(per_class)
        return np.where(valid, per_class, 0.0).sum(0) / valid.sum(0)


def _binary_auc_draws(positive: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The weighted Mann-Whitney AUC of one class under each row of counts ``w``: sum over (positive, negative)
    pairs of w_i w_j [s_i > s_j] (1/2 on ties), divided by (weight of positives) x (weight of negatives)."""
    order = np.argsort(score, kind="stable")
    ranked, pos = score[order], positive[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # one group per distinct score (ties)
    out = np.empty(len(w))
    for lo in range(0, len(w), _CHUNK):
        block = w[lo:lo + _CHUNK][:, order].astype(np.float64)
        p = np.add.reduceat(block * pos, starts, axis=1)
        n = np.add.reduceat(block * ~pos, starts, axis=1)
        below = np.cumsum(n, axis=1) - n  # negatives scored strictly lower than the group
        num, den = (p * (below + 0.5 * n)).sum(1), p.sum(1) * n.sum(1)
        out[lo:lo + _CHUNK] = np.divide(num, den, out=np.full(len(num), np.nan), where=den > 0)
    return out


def score_draws(metric: str, task: str, cells: Mapping[str, Sequence[Source]],
                w: Mapping[str, np.ndarray]) -> np.ndarray:
    """A strategy's score under each resample: the mean over datasets (``cells``' keys) of the mean over its
    seeds; a float source is a failed seed's constant score. ``w``: each dataset's resamples (shared)."""
    per_dataset = []
    for dataset, sources in cells.items():
        b = len(w[dataset])
        per_dataset.append(np.mean([np.full(b, s) if isinstance(s, float) else metric_draws(metric, task, s, w[dataset])
                                    for s in sources], axis=0))
    return np.mean(per_dataset, axis=0)


def interval(draws: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


_LOADED: dict[tuple[str, str, int], Predicted | str] = {}  # (record path, split, mtime): each file read once


def load_split(run: Run, split: str) -> Predicted | str:
    """A record's ``split`` predictions (``run.path``: the record's file), checked to reproduce the record's metrics
    of that split; or why there are none."""
    # Here, not on top: metrics.py imports scikit-learn, which only checking kept predictions needs; the leaderboard's
    # modules import without it (tests/unit/test_layers.py)
    from medft_bench.metrics import compute_metrics

    path = run.path
    try:
        key = (str(path), split, Path(path).stat().st_mtime_ns)
    except OSError:
        key = (str(path), split, 0)
    if key in _LOADED:
        return _LOADED[key]
    try:
        loaded = predictions.load(Path(path), run.record, split)
    except RecordError as exc:
        loaded = str(exc)
    if loaded is None:
        out: Predicted | str = (f"no per-image {split} predictions kept (an older record: run it again with "
                                "--rerun)")
    elif isinstance(loaded, str):
        out = loaded
    else:
        labels, scores = loaded
        recomputed = compute_metrics(run.task, labels, scores)
        recorded = (run.metrics or {}).get(split) or {}
        same = all(recomputed.get(k) == recorded.get(k) for k in SUPPORTED)
        out = (Predicted(labels, scores) if same else
               f"its {split} predictions do not reproduce the record's {split} metrics")
    _LOADED[key] = out
    return out
