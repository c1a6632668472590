"""The statistics of the leaderboard, each a small pure function (tested against hand-computed values).

- mean over seeds, sample standard deviation (ddof=1; undefined for one seed), and a 95% confidence
  interval for the mean from Student's t (:func:`t_half`, also :mod:`separation`'s), only when there are at
  least 3 seeds;
- ranks within a case, higher metric = rank 1, ties share the average of the ranks they span;
- tests at the independent unit, the dataset (:func:`dataset_means`, :func:`t_test`, :func:`sign_flip_test`),
  within-case seed evidence (:func:`welch_within_case`), all through ``scipy.stats``, and the score a failed
  seed counts as (:func:`chance_score`);
- Holm's step-down adjustment of those p-values within one table;
- the majority-class flag (:func:`majority_flag`, from :mod:`medft_bench.gates`);
- the Pareto frontier of (cost, score) points.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

# One definition of the flag, shared with the record's weak_result and the pytest case's warning.
from medft_bench.gates import majority_flag as majority_flag
from medft_bench.vocabulary import MULTI_LABEL as MULTI_LABEL

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

MIN_SEEDS_CI = 3
ALPHA = 0.05  # every test's level; every interval is its complement
CI_LEVEL = 1 - ALPHA
TIE_DECIMALS = 9  # means equal to this many decimals tie (float noise is not a difference)


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float | None
    std: float | None  # sample std (ddof=1); None when n < 2
    ci: tuple[float, float] | None  # 95% t interval for the mean; None when n < MIN_SEEDS_CI

    @property
    def ci_half(self) -> float | None:
        return None if self.ci is None else (self.ci[1] - self.ci[0]) / 2


def group_by(items: Iterable[T], key: Callable[[T], K]) -> dict[K, list[T]]:
    """``items`` by ``key``, each group in the items' order and the groups in the order first seen: the one
    group-by of the leaderboard (records by cell, rows by case, cases by modality, ...)."""
    out: dict[K, list[T]] = {}
    for item in items:
        out.setdefault(key(item), []).append(item)
    return out


def summarize(values: list[float]) -> Summary:
    """Mean, sample std (ddof=1) and a two-sided 95% t confidence interval (n >= 3) of ``values``."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return Summary(0, None, None, None)
    mean = math.fsum(vals) / n
    if n == 1:
        return Summary(1, mean, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / (n - 1))
    ci = None
    if n >= MIN_SEEDS_CI:
        half = t_half(std, n - 1, n=n)
        ci = (mean - half, mean + half)
    return Summary(n, mean, std, ci)


@functools.lru_cache(maxsize=4096)
def _quantile(q: float, df: float) -> float:
    from scipy import stats as sps

    return float(sps.t.ppf(q, df) if math.isfinite(df) else sps.norm.ppf(q))


def t_half(sd: float, df: float, level: float = CI_LEVEL, n: int = 1) -> float:
    """Half-width of the two-sided ``level`` interval of an estimate whose standard deviation is ``sd`` (over
    ``sqrt(n)``: of a mean of ``n``): Student's t quantile (``scipy.stats.t``) at ``df`` degrees of freedom,
    the normal's when they are infinite. One interval for the seed summaries and the answer's spreads."""
    return _quantile(0.5 + level / 2, df) * sd / math.sqrt(n)


def average_ranks(scores: dict[str, float]) -> dict[str, float]:
    """Rank of each key by score, higher score = rank 1; ties get the average of their ranks."""
    if not scores:
        return {}
    from scipy.stats import rankdata

    keys = sorted(scores)
    ranks = rankdata([-round(scores[k], TIE_DECIMALS) for k in keys], method="average")
    return {k: float(r) for k, r in zip(keys, ranks)}


def same(a: float, b: float) -> bool:
    return round(a, TIE_DECIMALS) == round(b, TIE_DECIMALS)


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family = the given tests)."""
    items = sorted(pvalues.items(), key=lambda kv: (kv[1], kv[0]))
    m = len(items)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, (k, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        adjusted[k] = running
    return adjusted


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Keys of the points (cost, score) that no other point dominates (cost <= and score >=, one strictly)."""
    front = set()
    for k, (c, s) in points.items():
        dominated = any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for k2, (c2, s2) in points.items() if k2 != k)
        if not dominated:
            front.add(k)
    return front


# --- Tests at the independent unit: the dataset --------------------------------------------------------------
#
# A dataset's backbones share its effect (a strategy that suits a dataset tends to suit it on every backbone),
# so (dataset, backbone) cases are not independent draws; seeds are replicates within a case. Every test of a
# strategy against FT, and every claim, therefore takes one number per dataset (the mean over its backbones of
# the case differences, each a difference of means over seeds) and tests over datasets.

MIN_DATASETS = 3  # a t-test over datasets needs at least this many (n = 2: one degree of freedom, no power)


def dataset_means(per_case: dict[tuple[str, str], float]) -> dict[str, float]:
    """(dataset, backbone) -> value, averaged over each dataset's backbones: one value per dataset."""
    by_dataset = group_by(sorted(per_case.items()), lambda kv: kv[0][0])
    return {d: math.fsum(v for _, v in kvs) / len(kvs) for d, kvs in by_dataset.items()}


def t_test(values: list[float], alternative: str = "two-sided", min_n: int = MIN_DATASETS,
           level: float = CI_LEVEL, unit: str = "datasets") -> dict[str, Any]:
    """One-sample t-test of ``values`` (one per independent unit) against 0 (``scipy.stats.ttest_1samp``), with
    its two-sided ``level`` t interval whatever the alternative.

    Every value counts, zeros included (the n reported is the n tested). ``note`` says why there is no p."""
    vals = [round(float(v), TIE_DECIMALS) for v in values]
    n = len(vals)
    summary = summarize(vals)
    out: dict[str, Any] = {"n": n, "unit": unit, "mean": summary.mean, "std": None, "t": None, "p": None,
                           "ci": None, "ci_level": level, "alternative": alternative, "note": None}
    if n < min_n:
        shown = unit[:-1] if n == 1 and unit.endswith("s") else unit
        out["note"] = f"not testable: n = {n} {shown} (a test needs >= {min_n})"
        return out
    out["std"] = summary.std
    if same(summary.std, 0.0):
        out["note"] = ("all differences are zero" if same(summary.mean, 0.0)
                       else f"no spread over the {n} {unit}: a t-test is undefined")
        return out
    from scipy import stats as sps

    with warnings.catch_warnings():  # values close together: scipy's precision-loss warning, not a failure
        warnings.simplefilter("ignore", RuntimeWarning)
        test = sps.ttest_1samp(vals, 0.0, alternative=alternative)
        ci = sps.ttest_1samp(vals, 0.0).confidence_interval(level)
    out.update(t=float(test.statistic), p=float(test.pvalue), ci=(float(ci.low), float(ci.high)))
    return out


def sign_flip_test(values: list[float], alternative: str = "greater", n_random: int = 20000,
                   seed: int = 0) -> dict[str, Any]:
    """Sign-flip permutation test of the mean of ``values`` (one per independent unit, symmetric about 0 under
    the null): ``scipy.stats.permutation_test`` of one sample with ``permutation_type="samples"``, exact over
    every sign vector up to 16 units, else ``n_random`` seeded flips. Means within 10^-TIE_DECIMALS of the
    observed one count as reaching it (values of 1/3 and 2/6 rounded apart are a tie). ``min_p`` is the smallest
    p the test can give (1 / 2^(non-zero values)): at or above ALPHA it cannot reject at all."""
    import numpy as np
    from scipy import stats as sps

    vals = np.array([round(float(v), TIE_DECIMALS) for v in values], dtype=float)
    n = len(vals)
    if n == 0:
        return {"n": 0, "statistic": None, "p": None, "min_p": 1.0}
    nonzero = int(np.count_nonzero(vals))
    observed = float(vals.mean())
    # scipy needs two values; one value's sign vectors are +v and -v
    null = np.array([observed, -observed]) if n == 1 else sps.permutation_test(
        (vals,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples", vectorized=True,
        n_resamples=2 ** n if n <= 16 else n_random, alternative=alternative, random_state=seed).null_distribution
    eps = 10.0 ** -TIE_DECIMALS
    if alternative == "greater":
        p = float(np.mean(null >= observed - eps))
    elif alternative == "less":
        p = float(np.mean(null <= observed + eps))
    else:
        p = float(np.mean(np.abs(null) >= abs(observed) - eps))
    return {"n": n, "statistic": observed, "p": p, "min_p": 2.0 ** -nonzero if alternative != "two-sided"
            else min(1.0, 2.0 ** (1 - nonzero))}


def welch_within_case(x: list[float], y: list[float], alternative: str = "two-sided") -> float | None:
    """Welch's t-test of one case's seeds (``x`` against ``y``; ``scipy.stats.ttest_ind(equal_var=False)``):
    within-case evidence only, seeds being replicates of one (dataset, backbone) case; None with fewer than 2
    seeds a side or no spread in either."""
    if len(x) < 2 or len(y) < 2:
        return None
    if summarize(x).std ** 2 / len(x) + summarize(y).std ** 2 / len(y) <= 1e-2 * 10 ** (-2 * TIE_DECIMALS):
        return None
    from scipy import stats as sps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(sps.ttest_ind(x, y, equal_var=False, alternative=alternative).pvalue)
    return p if math.isfinite(p) else None


def chance_score(metric: str, task: str, n_classes: int | None, majority: dict[str, Any] | None) -> float:
    """The score a failed or diverged seed counts as: what predicting the majority class scores.
    balanced accuracy: 1 / classes (0.5 multi-label); AUC: 0.5; ACC: the test split's majority share (from
    the dataset's records), else 1 / classes; macro F1 and mAP (no such score recorded): 0, the worst."""
    majority = majority or {}
    if metric == "auc":
        return 0.5
    if metric == "balanced_acc":
        if isinstance(majority.get("balanced_acc"), (int, float)):
            return float(majority["balanced_acc"])
        return 0.5 if task == MULTI_LABEL or not n_classes else 1.0 / n_classes
    if metric == "acc":
        if isinstance(majority.get("acc"), (int, float)):
            return float(majority["acc"])
        return 1.0 / n_classes if n_classes else 0.0
    return 0.0
