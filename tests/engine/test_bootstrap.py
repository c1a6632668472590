"""The bootstrap over test images: the record's metric at no resampling, the nominal error rate under a null,
power under an alternative, and an interval only from predictions that reproduce their record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from medft_bench.leaderboard import bootstrap, separation
from medft_bench.run_env import RunEnv


def _cell(rng: np.random.Generator, y: np.ndarray, p_correct: float, n_classes: int = 2) -> bootstrap.Predicted:
    """Probabilities whose predicted class is right with probability ``p_correct``, image by image."""
    right = rng.random(len(y)) < p_correct
    pred = np.where(right, y, (y + rng.integers(1, n_classes, len(y))) % n_classes)
    scores = np.full((len(y), n_classes), 0.1 / max(1, n_classes - 1))
    scores[np.arange(len(y)), pred] = 0.9
    return bootstrap.Predicted(y, scores)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_no_resampling_gives_the_metric_itself(n_classes: int) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, n_classes, 300)
    cell = _cell(rng, y, 0.7, n_classes)
    task = "binary-class" if n_classes == 2 else "multi-class"
    ones = np.ones((1, len(y)), dtype=np.float32)
    pred = bootstrap.predicted_labels(task, cell.scores)
    assert bootstrap.metric_draws("balanced_acc", task, cell, ones)[0] == pytest.approx(
        balanced_accuracy_score(y, pred), abs=1e-12)
    assert bootstrap.metric_draws("acc", task, cell, ones)[0] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    # a draw is a weighting: the same as scoring the images it drew
    w = bootstrap.weights(len(y), b=3)
    idx = np.repeat(np.arange(len(y)), w[0].astype(int))
    assert bootstrap.metric_draws("balanced_acc", task, cell, w)[0] == pytest.approx(
        balanced_accuracy_score(y[idx], pred[idx]), abs=1e-12)


def _delta_excludes_zero(rng: np.random.Generator, gap: float, b: int = 400) -> bool:
    y = (rng.random(250) < 0.35).astype(int)  # imbalanced, as PneumoniaMNIST
    w = {"d": bootstrap.weights(len(y), b=b, seed=int(rng.integers(1 << 30)))}
    a = {"d": [_cell(rng, y, 0.8 + gap) for _ in range(3)]}
    c = {"d": [_cell(rng, y, 0.8) for _ in range(3)]}
    lo, hi = bootstrap.interval(bootstrap.score_draws("balanced_acc", "binary-class", a, w)
                                - bootstrap.score_draws("balanced_acc", "binary-class", c, w))
    return not lo <= 0 <= hi


def test_under_a_null_the_paired_interval_excludes_zero_at_about_five_percent() -> None:
    """Two strategies equally good image by image (3 seeds each): the 95% interval of their difference should
    exclude 0 about 5% of the time; a test that ignored the pairing or the images would not."""
    rng = np.random.default_rng(7)
    sims = 300
    rejections = sum(_delta_excludes_zero(rng, 0.0) for _ in range(sims))
    assert 3 <= rejections <= 30, rejections  # binomial(300, 0.05): mean 15, sd 3.8


def test_a_real_difference_is_found() -> None:
    rng = np.random.default_rng(8)
    assert sum(_delta_excludes_zero(rng, 0.1) for _ in range(40)) >= 36


def test_a_failed_seed_counts_as_its_constant() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 100)
    cell = _cell(rng, y, 0.9)
    w = {"d": bootstrap.weights(100, b=50)}
    both = bootstrap.score_draws("balanced_acc", "binary-class", {"d": [cell, 0.5]}, w)
    alone = bootstrap.score_draws("balanced_acc", "binary-class", {"d": [cell]}, w)
    assert np.allclose(both, (alone + 0.5) / 2)


def test_the_answer_carries_intervals_only_from_predictions_that_match(tmp_path: Path) -> None:
    from medft_bench.leaderboard.aggregate import aggregate
    from medft_bench.leaderboard.load import load_inputs
    from medft_bench.leaderboard.recommend import recommend
    from medft_bench.results import predictions
    from medft_bench.runner import run_or_reuse
    from tests.helpers import tiny_cell

    outs = [run_or_reuse(tiny_cell("resnet18", s, seed=seed), RunEnv.at(tmp_path, progress=False))
            for s in ("lp", "knn") for seed in (0, 1, 2)]

    def answer():
        bootstrap._LOADED.clear()
        (group,) = aggregate(load_inputs([tmp_path]).runs)
        (rec,) = recommend(group)
        return rec

    rec = answer()
    from medft_bench.leaderboard.tables.recommendations import recommendation_table
    from medft_bench.leaderboard.tables.results import results_table

    (group,) = aggregate(load_inputs([tmp_path]).runs)
    for table in (recommendation_table(group), results_table(group)):  # 28.7: the split sizes beside the numbers
        assert "images train/val/test: pneumoniamnist 32/16/16" in table.caption
    assert rec.noise == "seeds and test images"
    texts = [[str(c) for c in row] for row in recommendation_table(group).rows]
    best_row = texts[[r[1] for r in texts].index("best")]
    assert best_row[3] == f"{rec.best.mean * 100:.1f} ± {rec.best.score.half * 100:.1f}"
    # the interval carries both sources: wider than the seeds' t interval alone, and than the images' alone
    seeds_only = separation.score(separation.Evidence(np.array([rec.best.mean] * 3)))
    assert rec.best.score.var > 0 and rec.best.score.half > (seeds_only.half or 0)
    other = next(st for st in rec.standings if st is not rec.best)
    assert other.versus.diff.interval[0] <= other.mean - rec.best.mean <= other.versus.diff.interval[1]
    # predictions that no longer reproduce their record (a hand-edited record) give no interval, and say why
    victim = next(o for o in outs if o.record["strategy"]["name"] == rec.best.strategy)
    entry = victim.record["predictions"]["splits"]["test"]
    labels = predictions.folder_for(victim.path) / entry["labels"]
    labels.unlink()
    assert "cannot read" in answer().noise and answer().noise.startswith("seeds only")
