"""Answers per modality: for each modality x backbone of a group, the best strategy, the runner-up, whether
their difference is significant, and the cheapest strategy within one confidence interval of the best.

A strategy competes when it has a mean in every case (dataset) of the modality and backbone, so that all
compare on the same datasets. Its score per seed is the mean over those datasets of that seed's test metric;
mean, std and the 95% t interval are taken over the seeds every dataset has (:func:`stats.summarize`).
Cost is the mean training seconds per seed over the datasets (a tuned group's: the whole learning-rate
sweep, so tuning is paid for). Each group (tier, data, weights, image size, protocol) is answered on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from medft_bench.leaderboard import stats
from medft_bench.leaderboard.aggregate import Group, Row
from medft_bench.leaderboard.names import strategy_sort_key

ALPHA = 0.05


@dataclass(frozen=True)
class Candidate:
    strategy: str
    summary: stats.Summary  # over seeds, of the per-seed mean over the modality's datasets
    by_seed: dict[tuple[str, int], float]  # (dataset, seed) -> value: the pairs a paired test uses
    train_s: float | None  # mean training seconds per seed over the datasets (tuned: the whole sweep)


@dataclass(frozen=True)
class Recommendation:
    modality: str
    backbone: str
    datasets: list[str]
    metric: str  # the metric, or several joined with "/" when the datasets use different ones
    best: Candidate
    runner_up: Candidate | None
    significant: bool | None  # best vs runner-up; None: undecided (too few pairs and overlapping CIs)
    test: str  # how that was decided, e.g. "Wilcoxon p = 0.031 (9 pairs)" or why it was not
    p: float | None
    cheapest: Candidate | None  # the cheapest strategy whose mean is within the best's 95% CI; None without CI
    cheapest_note: str
    candidates: list[Candidate]


def _candidate(strategy: str, rows: list[Row]) -> Candidate | None:
    per_dataset = [dict(zip(r.seeds, r.values)) for r in rows]
    seeds = sorted(set.intersection(*(set(d) for d in per_dataset)))
    if not seeds:
        return None
    values = [sum(d[s] for d in per_dataset) / len(per_dataset) for s in seeds]
    costs = [r.costs["train_s"] for r in rows]
    return Candidate(strategy, stats.summarize(values),
                     {(r.dataset, s): d[s] for r, d in zip(rows, per_dataset) for s in seeds},
                     None if any(c is None for c in costs) else sum(costs) / len(costs))


def _significance(best: Candidate, other: Candidate) -> tuple[bool | None, str, float | None]:
    pairs = sorted(best.by_seed.keys() & other.by_seed.keys())
    test = stats.wilcoxon_paired([best.by_seed[k] for k in pairs], [other.by_seed[k] for k in pairs])
    if test["p"] is not None:
        return test["p"] < ALPHA, f"Wilcoxon p = {test['p']:.3g}, {len(pairs)} pairs", test["p"]
    n_pairs = f"{len(pairs)} pair{'' if len(pairs) == 1 else 's'}"
    why = (f"{n_pairs}, too few for Wilcoxon" if len(pairs) < stats.MIN_WILCOXON_CASES
           else f"Wilcoxon: {test['note']}")
    a, b = best.summary.ci, other.summary.ci
    if a is not None and b is not None:
        if a[0] > b[1] and not stats.same(a[0], b[1]):
            return True, f"95% CIs disjoint; {why}", None
        return None, f"95% CIs overlap; {why}", None
    return None, f"no CI below {stats.MIN_SEEDS_CI} seeds; {why}", None


def _cost_key(c: Candidate) -> tuple[float, float, tuple[int, str]]:
    return (c.train_s if c.train_s is not None else float("inf"), -(c.summary.mean or 0.0),
            strategy_sort_key(c.strategy))


def recommend(group: Group) -> list[Recommendation]:
    """One recommendation per (modality, backbone) of the group that has at least one competing strategy."""
    by_key: dict[tuple[str, str], list] = {}
    for case in group.cases:
        by_key.setdefault((case.modality, case.backbone), []).append(case)
    out = []
    for (modality, backbone), cases in sorted(by_key.items()):
        strategies = sorted(set.intersection(*(set(c.rows) for c in cases)), key=strategy_sort_key)
        candidates = [cand for s in strategies if (cand := _candidate(s, [c.rows[s] for c in cases])) is not None]
        if not candidates:
            continue
        ranked = sorted(candidates, key=lambda c: (-(c.summary.mean or 0.0), _cost_key(c)))
        best, runner = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        if runner is None:
            significant, test, p = None, "no runner-up", None
        else:
            significant, test, p = _significance(best, runner)
        if best.summary.ci is None:
            cheapest, note = None, f"no CI: the best has {best.summary.n} seed(s), a CI needs {stats.MIN_SEEDS_CI}"
        else:
            within = [c for c in candidates if c.summary.mean is not None and
                      (c.summary.mean >= best.summary.ci[0] or stats.same(c.summary.mean, best.summary.ci[0]))]
            cheapest = min(within, key=_cost_key)
            note = "the best itself" if cheapest is best else f"{len(within)} within the best's 95% CI"
        metrics = sorted({c.metric for c in cases})
        out.append(Recommendation(modality, backbone, sorted(c.dataset for c in cases), "/".join(metrics), best,
                                  runner, significant, test, p, cheapest, note, ranked))
    return out
