"""Which strategies the data cannot separate from the best, with both sources of noise.

A strategy's score in an answer is the mean over its seeds of each seed's test score (one number per seed: the
mean over the modality's datasets; a failed seed at the chance score). Two things move that mean: the training
noise (another seed trains another network, draws another subset of training images and another batch order)
and the test images (another sample of patients). The interval of a score, and of a difference between two
strategies, carries both:

- seeds: the sample variance of the per-seed scores over n (for a difference, the two strategies' terms added,
  Welch's way: strategies share no batch order, so nothing pairs seed i of one with seed i of another);
- test images: the variance, over percentile-bootstrap resamples of the test images, of the seed-averaged score
  (for a difference, of the difference under the same resample: the images are shared, so that part is
  paired image by image; :mod:`bootstrap`).

The two variances add; the degrees of freedom are Welch-Satterthwaite's, the image term counting as known
(infinite degrees of freedom). The 95% interval is ``estimate ± t(0.975, df) · sd``. With fewer than two
seeds a side there is no estimate of the training noise and no interval (the answer says so).

The best is the strategy with the highest VALIDATION mean (selection on the split the runs chose their
checkpoints on). Every other strategy is compared with it on TEST, with Games-Howell's simultaneous procedure
(Tukey's studentized range over the k strategies, each pair with its own variance and Welch-Satterthwaite
degrees of freedom): its intervals and p-values hold for every pair at once, so they stay valid whichever
strategy the validation split picked. A test against the pick alone (Holm over k - 1 comparisons) does not:
the pick's networks are the ones whose training noise was lucky on validation, and the same networks are
scored on test, so under a null the pick sits above the rest on test too (simulated in tests/e2e/test_separation.py:
12.7 % of null answers excluded a strategy at a nominal 5 %). A strategy is separable when it is below the best
and its simultaneous p is below ``ALPHA`` (its simultaneous 95% interval then excludes 0). ``not_separable`` is
the best and every strategy not shown below it. The selection's own uncertainty is ``picked``: the share of
joint resamples (seeds within each strategy, validation images shared) in which each strategy has the highest
validation mean.

This module is pure numpy and scipy: it knows nothing of records (:mod:`recommend` gathers the evidence).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from medft_bench.leaderboard.stats import ALPHA, CI_LEVEL, t_half

PICK_DRAWS = 2000
PICK_SEED = 20261207


@dataclass(frozen=True)
class Evidence:
    """One strategy's numbers in one answer. ``test``/``val``: each seed's score (n,); ``*_draws``: each seed's
    score under each shared image resample (B, n); None where no per-image predictions exist."""

    test: np.ndarray
    val: np.ndarray | None = None
    test_draws: np.ndarray | None = None
    val_draws: np.ndarray | None = None

    @property
    def n(self) -> int:
        return len(self.test)


@dataclass(frozen=True)
class Spread:
    """An estimate with its 95% interval (``half``: its half-width; None without an estimate of the noise)."""

    value: float
    var: float | None  # the estimate's variance: seeds + test images
    df: float | None
    half: float | None

    @property
    def interval(self) -> tuple[float, float] | None:
        return None if self.half is None else (self.value - self.half, self.value + self.half)


@dataclass(frozen=True)
class Versus:
    """A strategy against the best on test: the difference (strategy - best) with its simultaneous 95% interval
    (Games-Howell over the answer's strategies) and its simultaneous p."""

    diff: Spread
    p: float | None

    @property
    def below(self) -> bool:
        return self.p is not None and self.p < ALPHA and self.diff.value < 0


@dataclass(frozen=True)
class Separation:
    best: str
    selected_on: str  # "validation", or "test (...)" when a strategy lacks validation scores
    scores: dict[str, Spread]  # test score per strategy
    versus: dict[str, Versus]  # every strategy but the best
    picked: dict[str, float]  # share of resamples in which each strategy is the validation pick
    not_separable: list[str]  # the best first, then by test mean
    images: bool  # whether the intervals carry the test images' noise (per-image predictions for every seed)


def _seed_var(x: np.ndarray) -> float | None:
    """Variance of the seed mean (sample variance / n); None below two seeds."""
    return None if len(x) < 2 else float(np.var(x, ddof=1) / len(x))


def _spread(value: float, seed_terms: list[tuple[float | None, int]], image_var: float) -> Spread:
    """``value`` with the variance of its seed terms (each (variance of a mean, seeds)) plus ``image_var``."""
    if any(v is None for v, _ in seed_terms):
        return Spread(value, None, None, None)
    var = sum(v for v, _ in seed_terms) + image_var  # type: ignore[misc]
    denom = sum(v * v / (n - 1) for v, n in seed_terms if v)  # type: ignore[operator]
    df = math.inf if denom == 0 else var * var / denom
    return Spread(value, var, df, t_half(math.sqrt(var), df))


def _image_var(draws: np.ndarray | None) -> float:
    return 0.0 if draws is None else float(np.var(draws, ddof=1))


def score(ev: Evidence) -> Spread:
    """A strategy's test mean over seeds with its interval over seeds and test images."""
    image = None if ev.test_draws is None else ev.test_draws.mean(1)
    return _spread(float(np.mean(ev.test)), [(_seed_var(ev.test), ev.n)], _image_var(image))


def difference(a: Evidence, b: Evidence) -> tuple[Spread, float | None]:
    """(a - b) on test with its interval, and the one-sided p of "a below b" (None without an interval)."""
    image = None if a.test_draws is None or b.test_draws is None else a.test_draws.mean(1) - b.test_draws.mean(1)
    d = _spread(float(np.mean(a.test) - np.mean(b.test)), [(_seed_var(a.test), a.n), (_seed_var(b.test), b.n)],
                _image_var(image))
    if d.var is None:
        return d, None
    if d.var == 0:
        return d, 0.0 if d.value < 0 else 1.0
    t = d.value / math.sqrt(d.var)
    p = float(sps.t.cdf(t, d.df)) if math.isfinite(d.df or math.inf) else float(sps.norm.cdf(t))
    return d, p


def picked_shares(evidence: dict[str, Evidence], draws: int = PICK_DRAWS, seed: int = PICK_SEED) -> dict[str, float]:
    """How often each strategy has the highest validation mean when each strategy's seeds are resampled (with
    replacement) and the validation images are resampled (shared); ties go to the earlier strategy in
    ``evidence``'s order, as the selection breaks them."""
    rng = np.random.default_rng(seed)
    names = list(evidence)
    rows = []
    for name in names:
        ev = evidence[name]
        per_seed = ev.val_draws if ev.val_draws is not None else np.broadcast_to(ev.val, (draws, ev.n))
        b = min(draws, len(per_seed))
        idx = rng.integers(0, ev.n, size=(b, ev.n))
        rows.append(np.take_along_axis(np.asarray(per_seed[:b]), idx, axis=1).mean(1))
    b = min(len(r) for r in rows)
    winners = np.argmax(np.stack([r[:b] for r in rows]), axis=0)
    counts = np.bincount(winners, minlength=len(names))
    return {name: float(c / b) for name, c in zip(names, counts)}


@functools.lru_cache(maxsize=4096)
def _range_quantile_cached(k: int, df: float) -> float:
    return float(sps.studentized_range.ppf(CI_LEVEL, k, df))


def _range_quantile(k: int, df: float) -> float:
    """The studentized range's CI_LEVEL quantile; df to 0.1 (the quantile moves in the fourth digit) and
    above 1000 as infinite: its numerical integral costs a fifth of a second."""
    return _range_quantile_cached(k, np.inf if df > 1000 else round(df, 1))


def simultaneous(a: Evidence, b: Evidence, k: int) -> Versus:
    """(a - b) on test among ``k`` strategies: Games-Howell's simultaneous 95% interval and p (the studentized
    range of k means at the pair's Welch-Satterthwaite degrees of freedom; with k = 2, Welch's two-sided t)."""
    d, _ = difference(a, b)
    if d.var is None:
        return Versus(d, None)
    df = d.df if d.df is not None and math.isfinite(d.df) else np.inf
    q = _range_quantile(max(k, 2), df) / math.sqrt(2)
    half = q * math.sqrt(d.var)
    if d.var == 0:
        return Versus(Spread(d.value, d.var, d.df, half), 1.0 if d.value == 0 else 0.0)
    stat = abs(d.value) / math.sqrt(d.var) * math.sqrt(2)
    return Versus(Spread(d.value, d.var, d.df, half), float(sps.studentized_range.sf(stat, max(k, 2), df)))


def separate(evidence: dict[str, Evidence]) -> Separation:
    """The answer for one case: the best on validation (ties: the earlier strategy in ``evidence``'s order, which
    the caller sorts by cost), every strategy's test interval, each against the best, and the set not separable
    from it."""
    names = list(evidence)
    on_val = all(ev.val is not None for ev in evidence.values())
    key = (lambda s: float(np.mean(evidence[s].val))) if on_val else (lambda s: float(np.mean(evidence[s].test)))
    best = max(names, key=lambda s: (key(s), -names.index(s)))
    scores = {s: score(ev) for s, ev in evidence.items()}
    versus = {s: simultaneous(evidence[s], evidence[best], len(names)) for s in names if s != best}
    kept = sorted((s for s in names if s != best and not versus[s].below), key=lambda s: -scores[s].value)
    images = all(ev.test_draws is not None for ev in evidence.values())
    return Separation(best, "validation" if on_val else "test (a strategy has no validation score)", scores, versus,
                      picked_shares(evidence) if on_val else {}, [best, *kept], images)


def non_inferior(candidate: Evidence, best: Evidence, margin: float,
                 alpha: float = ALPHA) -> tuple[bool | None, float | None]:
    """Is ``candidate`` non-inferior to ``best`` on test by ``margin``: the one-sided (1 - alpha) lower bound of
    (candidate - best), over seeds and test images, above -margin? (None, None) without an interval."""
    d, _ = difference(candidate, best)
    if d.var is None:
        return None, None
    lower = d.value - t_half(math.sqrt(d.var), d.df if d.df is not None else math.inf, level=1 - 2 * alpha)
    return lower > -margin, lower
