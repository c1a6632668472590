"""The statistics of the leaderboard, each a small pure function (tested against hand-computed values).

- mean over seeds, sample standard deviation (ddof=1; undefined for one seed), and a 95% confidence
  interval for the mean from Student's t (``scipy.stats.t``), only when there are at least 3 seeds;
- ranks within a case, higher metric = rank 1, ties share the average of the ranks they span;
- the paired Wilcoxon signed-rank test of a strategy against FT across cases (at least 6 paired cases);
- Holm's step-down adjustment of those p-values within one table;
- the majority-class flag (:func:`majority_flag`, from :mod:`medft_bench.gates`);
- the Pareto frontier of (cost, score) points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# One definition of the flag, shared with the record's weak_result and the pytest case's warning.
from medft_bench.gates import MULTI_LABEL as MULTI_LABEL
from medft_bench.gates import majority_flag as majority_flag

MIN_SEEDS_CI = 3
MIN_WILCOXON_CASES = 6
CI_LEVEL = 0.95
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
        from scipy.stats import t

        half = float(t.ppf(0.5 + CI_LEVEL / 2, n - 1)) * std / math.sqrt(n)
        ci = (mean - half, mean + half)
    return Summary(n, mean, std, ci)


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


def wilcoxon_paired(x: list[float], y: list[float], min_n: int = MIN_WILCOXON_CASES) -> dict[str, Any]:
    """Two-sided paired Wilcoxon signed-rank test of ``x`` against ``y`` (scipy defaults: zero differences
    dropped, exact distribution for small n without ties). ``note`` says why there is no p-value."""
    n = len(x)
    diffs = [a - b for a, b in zip(x, y)]
    out: dict[str, Any] = {"n": n, "statistic": None, "p": None, "note": None,
                           "median_delta": _median(diffs) if diffs else None}
    if n < min_n:
        out["note"] = f"n too small ({n} < {min_n} paired cases)"
        return out
    if all(same(d, 0.0) for d in diffs):
        out["note"] = "all paired differences are zero"
        return out
    from scipy.stats import wilcoxon

    try:
        # on differences rounded like ranks, so that float noise does not break ties between |differences|
        res = wilcoxon([round(d, TIE_DECIMALS) for d in diffs], alternative="two-sided")
    except ValueError as exc:  # pragma: no cover - scipy refuses a degenerate sample
        out["note"] = f"test not possible ({exc})"
        return out
    out["statistic"] = float(res.statistic)
    out["p"] = float(res.pvalue)
    return out


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


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Keys of the points (cost, score) that no other point dominates (cost <= and score >=, one strictly)."""
    front = set()
    for k, (c, s) in points.items():
        dominated = any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for k2, (c2, s2) in points.items() if k2 != k)
        if not dominated:
            front.add(k)
    return front
