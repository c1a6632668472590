"""When a finished cell counts as a failure (it did not learn where it must), and when it is only weak.

Two different questions. The *learning gate* guards the pipeline on synthetic data (the smoke tier), where
the task is learnable by construction: there FT and LP-FT must beat chance, or the case fails. On real data
no result fails the case: a strategy no better than the majority class is an honest result, reported as a
*weak result* (a warning, the record's ``weak_result`` and the leaderboard's majority-class flag, all from
:func:`majority_flag`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from medft_bench.vocabulary import MULTI_LABEL

if TYPE_CHECKING:
    from medft_bench.results.view import RecordView


class WeakResultWarning(UserWarning):
    """A cell on real data whose result is no better than the majority class: kept, flagged, not failed."""


MUST_LEARN_ON_SYNTHETIC = ("ft", "lp_ft")
AUC_MARGIN = 0.1


def learning_gate(record: RecordView) -> str | None:
    """A reason the cell must count as failed, or None.

    Only on synthetic data: FT and LP-FT must beat chance by a clear margin, judged by test AUC (chance 0.5 for
    every task type): AUC > 0.5 + ``AUC_MARGIN``. AUC is threshold-free: a network trained from random weights
    for a few steps often ranks the classes well before its decision threshold settles (e.g. VGG-19 without
    BatchNorm), and what the gate must catch is a pipeline that learns nothing (shuffled labels, broken inputs).
    """
    if not record.ok or not record.metrics or not record.data["synthetic"]:
        return None
    if record.strategy_name not in MUST_LEARN_ON_SYNTHETIC:
        return None
    auc = record.test["auc"]
    if auc is None or auc <= 0.5 + AUC_MARGIN:
        return f"test AUC {auc} does not beat chance (0.5) by {AUC_MARGIN}"
    return None


def weak_result(task: str, metrics: dict[str, Any] | None) -> str | None:
    """Why a result's test metrics are no better than the majority-class baseline, or None (see
    :func:`majority_flag`); None without metrics."""
    if not metrics:
        return None
    return majority_flag(task, metrics.get("test", {}), metrics.get("majority", {}))


def majority_flag(task: str, test: dict[str, Any], majority: dict[str, Any]) -> str | None:
    """Why a result is no better than the majority-class baseline, or None when it is better.

    Single-label (binary, multi-class, ordinal): flagged when test ACC <= the majority class's ACC, or
    test balanced accuracy <= the majority predictor's (1 / number of classes present).
    Multi-label: ACC is no use (an all-negative predictor scores about 0.95 on ChestMNIST), so the flag is
    test AUC <= 0.5 (a ranking no better than a constant score); when AUC is missing, test balanced
    accuracy <= the all-negative predictor's (0.5).
    """
    def le(value: Any, ref: Any) -> bool:
        return isinstance(value, (int, float)) and isinstance(ref, (int, float)) and value <= ref + 1e-12

    if task == MULTI_LABEL:
        auc = test.get("auc")
        if isinstance(auc, (int, float)):
            return f"AUC {auc:.3f} <= 0.5 (chance)" if le(auc, 0.5) else None
        bal, ref = test.get("balanced_acc"), majority.get("balanced_acc")
        return f"balanced acc {bal:.3f} <= all-negative {ref:.3f}" if le(bal, ref) else None
    acc, ref = test.get("acc"), majority.get("acc")
    if le(acc, ref):
        return f"acc {acc:.3f} <= majority {ref:.3f}"
    bal, bref = test.get("balanced_acc"), majority.get("balanced_acc")
    if le(bal, bref):
        return f"balanced acc {bal:.3f} <= majority {bref:.3f}"
    return None


# A first trained epoch whose mean training loss is this many times a neutral head's is a blow-up, not learning.
BLOW_UP_FACTOR = 10.0
# Head inputs whose mean pairwise cosine reaches this are nearly parallel: the classes live in a small difference
# that one step shifting every image alike erases (models.head_init.feature_stats).
COLLINEAR = 0.9


def blow_up(record: RecordView) -> str | None:
    """Why a cell's first trained epoch shows its weights blown up, or None.

    Every new head starts neutral (a first loss of about ln C, ln 2 per label for multi-label; LP-FT's solved
    head below that), so a first-epoch mean training loss above ``BLOW_UP_FACTOR`` times that comes from the
    steps themselves: the learning rate threw the network far off (e.g. Adam at 1e-3 on a random VGG-19, whose
    fc6 has 25,088 inputs and no normalisation). Said next to a majority-class flag, it tells a reader that the
    head is not the cause.
    """
    trained = [e for e in record.epochs if isinstance(e.get("train_loss"), (int, float))]
    if not trained:
        return None
    n = record.n_classes or 2
    neutral = math.log(2) if record.data.get("task") == MULTI_LABEL else math.log(max(2, n))
    first = trained[0]
    if first["train_loss"] <= BLOW_UP_FACTOR * neutral:
        return None
    return (f"blew up: first-epoch training loss {first['train_loss']:.1f} (stage {first.get('stage', '?')}, "
            f"lr {first.get('lr', float('nan')):g}) against a neutral head's {neutral:.2f}")


def parallel_features(record: RecordView) -> str | None:
    """A note when the head's input features are nearly parallel across images (``head.feature_cosine`` >=
    ``COLLINEAR``), or None: the classes then live in a small difference on a shared direction, which a step
    that moves every image alike (Adam's first steps on a large layer; a head's logits swinging together)
    erases. Random VGG-19 shows it (0.98)."""
    cosine = record.head.get("feature_cosine")
    if isinstance(cosine, (int, float)) and cosine >= COLLINEAR:
        return f"its features point the same way for every image (mean cosine {cosine:.2f})"
    return None


def majority_causes(record: RecordView) -> list[str]:
    """What the record shows that explains a majority-class result: a blow-up, parallel features; said after
    the flag so that a reader does not blame the head's start."""
    return [c for c in (blow_up(record), parallel_features(record)) if c]
