"""The not-separable set under a null and under planted effects, and its interval against scipy.

Simulated answers with the real tier's shape: 11 strategies x 5 seeds. A seed's network has a training effect
that moves its validation and its test score alike (the same network is scored on both: the channel through
which picking the best on validation biases its test score upward), plus its own image-level deviations on
each split. Image resamples add a deviation shared by every network (the same images) and one of each network.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from medft_bench.leaderboard.separation import Evidence, difference, non_inferior, score, separate

K, N, B = 11, 5, 400
TRAIN_SD, IMAGE_SD, DRAW_SD = 0.02, 0.01, 0.012  # fractions of the metric: seeds' 2 pp, images' ~1 pp


def simulate(rng: np.random.Generator, effects: dict[int, float] | None = None) -> dict[str, Evidence]:
    effects = effects or {}
    shared = {split: rng.normal(0, DRAW_SD, B) for split in ("test", "val")}  # the same images for every network
    out = {}
    for k in range(K):
        train = 0.85 + effects.get(k, 0.0) + rng.normal(0, TRAIN_SD, N)
        split = {}
        for name in ("test", "val"):
            fixed = train + rng.normal(0, IMAGE_SD, N)
            split[name] = (fixed, fixed[None, :] + shared[name][:, None] + rng.normal(0, DRAW_SD / 2, (B, N)))
        out[f"s{k}"] = Evidence(split["test"][0], split["val"][0], split["test"][1], split["val"][1])
    return out


def test_under_the_null_the_set_excludes_a_strategy_at_most_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(11)
    reps = 300
    excluded = singletons = 0
    for _ in range(reps):
        sep = separate(simulate(rng))
        excluded += len(sep.not_separable) < K
        singletons += len(sep.not_separable) == 1
    rate = excluded / reps
    # nominal 0.05 (Holm, one-sided), plus three binomial standard errors of Monte-Carlo error
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps), rate
    assert singletons == 0


def test_a_planted_effect_of_the_real_tiers_size_is_found() -> None:
    rng = np.random.default_rng(12)
    reps = 60
    found = below = 0
    for _ in range(reps):
        sep = separate(simulate(rng, {0: 0.05, 1: -0.06}))  # +5 pp best, one strategy 6 pp below the rest
        found += sep.best == "s0"
        below += "s1" not in sep.not_separable
    assert found / reps >= 0.8 and below / reps >= 0.8, (found, below)


def test_without_image_draws_the_interval_is_welchs_t() -> None:
    a, b = np.array([0.80, 0.83, 0.81, 0.79]), np.array([0.75, 0.74, 0.78])
    d, p = difference(Evidence(a), Evidence(b))
    ref = sps.ttest_ind(b, a, equal_var=False, alternative="less")
    assert p == pytest.approx(sps.ttest_ind(a, b, equal_var=False, alternative="less").pvalue, rel=1e-9)
    assert d.df == pytest.approx(ref.df, rel=1e-9)
    lo, hi = sps.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.interval == pytest.approx((lo, hi), rel=1e-9)
    s = score(Evidence(a))
    assert s.half == pytest.approx(sps.t.ppf(0.975, 3) * sps.tstd(a) / 2)
    assert score(Evidence(a[:1])).half is None  # one seed: no estimate of the training noise


def test_the_image_term_widens_the_interval_and_pairs_images() -> None:
    rng = np.random.default_rng(3)
    shared = rng.normal(0, 0.02, (B, 1))
    a_draws = 0.80 + shared + rng.normal(0, 0.002, (B, 3))
    b_draws = 0.78 + shared + rng.normal(0, 0.002, (B, 3))
    a = Evidence(np.array([0.80, 0.81, 0.79]), test_draws=a_draws)
    b = Evidence(np.array([0.78, 0.79, 0.77]), test_draws=b_draws)
    alone = score(Evidence(a.test))
    assert score(a).half > alone.half  # the images' sampling error adds to the seeds'
    d, _ = difference(a, b)
    unpaired = math.sqrt(np.var(a_draws.mean(1), ddof=1) + np.var(b_draws.mean(1), ddof=1))
    assert d.var - 2 * (0.01 ** 2 / 3) < unpaired ** 2 / 4  # the shared images cancel in the difference


def test_non_inferiority_needs_the_lower_bound_above_the_margin() -> None:
    best = Evidence(np.array([0.80, 0.801, 0.799, 0.8005, 0.7995]))
    close = Evidence(np.array([0.7995, 0.8005, 0.799, 0.80, 0.7985]))
    far = Evidence(np.array([0.70, 0.85, 0.75, 0.82, 0.77]))
    assert non_inferior(close, best, 0.01)[0] is True
    shown, lower = non_inferior(far, best, 0.01)
    assert shown is False and lower < -0.01
    assert non_inferior(Evidence(close.test[:1]), best, 0.01) == (None, None)


def test_the_pick_breaks_a_validation_tie_by_order_and_reports_its_uncertainty() -> None:
    same = np.array([0.8, 0.8, 0.8])
    sep = separate({"cheap": Evidence(same, same), "dear": Evidence(same, same)})
    assert sep.best == "cheap" and sep.picked == {"cheap": 1.0, "dear": 0.0}
    rng = np.random.default_rng(5)
    sep = separate(simulate(rng))
    assert sum(sep.picked.values()) == pytest.approx(1.0) and max(sep.picked.values()) < 0.9  # a null: no sure pick
