"""Answers per modality: for each modality x backbone of a group, the strategy selected on VALIDATION, its
test score, whether it differs from the runner-up, and the cheapest strategy shown non-inferior to it.

A strategy competes when it has a mean in every case (dataset) of the modality and backbone, so that all
compare on the same datasets. Its score per seed is the mean over those datasets of that seed's metric;
mean, std and the 95% t interval are taken over the seeds every dataset has (:func:`stats.summarize`); a
failed or diverged seed counts as the majority-class (chance) score, on validation and on test, so that a
strategy that breaks is not recommended on its surviving seeds.

Selection and test use different numbers: strategies are ranked by their validation score (the split the
runs chose their checkpoints on), and every comparison is made on test. The unit of a comparison is the
seed: per seed, the difference of the two strategies' scores (each a mean over the modality's datasets),
paired by seed; the modality rarely has enough datasets (MedMNIST: one to three) for a test over datasets, so
a recommendation speaks for these datasets, with seeds as replicates, not for other datasets of the modality.

- best: the highest validation score (test when no validation metric is recorded, and then it says so);
- significant?: best against runner-up (second on validation), two-sided paired t-test over seeds on test;
- cheapest non-inferior: the least training time per seed among the strategies whose test score is
  non-inferior to the best's by MARGIN: the lower end of the one-sided 95% t interval of (strategy - best)
  over seeds is above -MARGIN (the best itself always qualifies). Cost is the mean training seconds per seed
  over the datasets (a tuned group's: the whole learning-rate sweep, so tuning is paid for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from medft_bench.leaderboard import bootstrap, stats
from medft_bench.leaderboard.aggregate import Group, Row
from medft_bench.leaderboard.names import strategy_sort_key

ALPHA = 0.05
MARGIN = 0.01  # non-inferiority margin: 1 percentage point of the metric
MIN_SEEDS = 3  # a paired t over seeds needs at least this many


@dataclass(frozen=True)
class Candidate:
    strategy: str
    summary: stats.Summary  # test: over seeds, of the per-seed mean over the modality's datasets
    by_seed: dict[int, float]  # seed -> test score (mean over the datasets): the pairs a paired test uses
    val: float | None  # mean validation score over the same seeds (what the selection ranks by)
    train_s: float | None  # mean training seconds per seed over the datasets (tuned: the whole sweep)
    by_pair: dict[tuple[str, int], float] | None = None  # (dataset, seed) -> test value
    peak_mem_mb: float | None = None  # the largest peak memory over the case's cells
    peak_mem_kind: str | None = None  # "gpu" (allocated) or "host" (resident, CPU runs)
    trainable_params: int | None = None  # the largest over the case's cells


@dataclass(frozen=True)
class Recommendation:
    modality: str
    backbone: str
    datasets: list[str]
    metric: str  # the metric, or several joined with "/" when the datasets use different ones
    best: Candidate
    runner_up: Candidate | None
    significant: bool | None  # best vs runner-up on test; None: not testable (fewer than MIN_SEEDS seeds)
    test: str  # how that was decided, e.g. "paired t over 3 seeds, p = 0.031" or why it was not
    p: float | None
    cheapest: Candidate | None  # the cheapest non-inferior strategy; None when non-inferiority cannot be tested
    cheapest_note: str
    candidates: list[Candidate]
    selected_on: str  # "validation" or "test (no validation metric recorded)"
    images: ImageIntervals | None = None  # the test set's sampling error (bootstrap over test images)


@dataclass(frozen=True)
class ImageIntervals:
    """95% percentile-bootstrap intervals over the test images (:mod:`bootstrap`), the models held fixed: the
    best's score, and the runner-up's and the cheapest's difference from the best (paired: the same draws)."""

    images: dict[str, int]  # dataset -> test images
    best: tuple[float, float] | None
    runner_up: tuple[float, float] | None
    cheapest: tuple[float, float] | None
    note: str  # why there are none, else ""


def _candidate(strategy: str, rows: list[Row]) -> Candidate | None:
    # failures counted: a failed or diverged seed scores the chance score on test and on validation
    per_dataset = [{s: t for s, (t, _) in r.by_seed_all.items()} for r in rows]
    per_dataset_val = [{s: v for s, (_, v) in r.by_seed_all.items()} for r in rows]
    seeds = sorted(set.intersection(*(set(d) for d in per_dataset)))
    if not seeds:
        return None
    values = {s: sum(d[s] for d in per_dataset) / len(per_dataset) for s in seeds}
    vals = [d.get(s) for d in per_dataset_val for s in seeds]
    val = None if any(v is None for v in vals) else sum(vals) / len(vals)
    costs = [r.costs["train_s"] for r in rows]
    mems = [(r.costs["peak_mem_mb"], r.costs["peak_mem_kind"]) for r in rows if r.costs.get("peak_mem_mb") is not None]
    trainable = [r.costs["trainable_params"] for r in rows if r.costs.get("trainable_params") is not None]
    mem, kind = max(mems) if mems else (None, None)
    return Candidate(strategy, stats.summarize(list(values.values())), values, val,
                     None if any(c is None for c in costs) else sum(costs) / len(costs),
                     {(r.dataset, s): d[s] for r, d in zip(rows, per_dataset) for s in seeds},
                     mem, kind, max(trainable) if trainable else None)


def _diffs(a: Candidate, b: Candidate) -> list[float]:
    return [a.by_seed[s] - b.by_seed[s] for s in sorted(a.by_seed.keys() & b.by_seed.keys())]


def _significance(best: Candidate, other: Candidate) -> tuple[bool | None, str, float | None]:
    diffs = _diffs(best, other)
    test = stats.t_test(diffs, "two-sided", min_n=MIN_SEEDS, unit="seeds")
    if test["p"] is None:
        return None, f"{test['note']}", None
    return test["p"] < ALPHA, f"paired t over {test['n']} seeds, p = {test['p']:.3g}", test["p"]


def non_inferior(candidate: Candidate, best: Candidate) -> bool | None:
    """Is ``candidate`` non-inferior to ``best`` on test by MARGIN (one-sided 95% lower bound of the paired
    difference over seeds above -MARGIN)? None with fewer than MIN_SEEDS paired seeds."""
    if candidate is best:
        return True
    diffs = _diffs(candidate, best)
    n = len(diffs)
    if n < MIN_SEEDS:
        return None
    mean = math.fsum(diffs) / n
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in diffs) / (n - 1))
    lower = mean - stats.t_quantile(1 - ALPHA, n - 1) * sd / math.sqrt(n)
    return lower > -MARGIN and not stats.same(lower, -MARGIN)


def _cost_key(c: Candidate) -> tuple[float, float, tuple[int, str]]:
    return (c.train_s if c.train_s is not None else float("inf"), -(c.summary.mean or 0.0),
            strategy_sort_key(c.strategy))


def _sources(rows: list[Row], seeds: list[int]) -> tuple[dict[str, list[bootstrap.Source]], str]:
    """Per dataset, each seed's test predictions (a failed seed: its chance score); or why they are missing."""
    out: dict[str, list[bootstrap.Source]] = {}
    for row in rows:
        if row.metric not in bootstrap.SUPPORTED or row.task == stats.MULTI_LABEL:
            return {}, f"{row.metric} is not bootstrapped (balanced accuracy and accuracy are)"
        ok = {r.seed: r for r in row.ok}
        out[row.dataset] = []
        for seed in seeds:
            if seed not in ok:
                out[row.dataset].append(float(row.by_seed_all[seed][0]))
                continue
            got = bootstrap.load_test(ok[seed])
            if isinstance(got, str):
                return {}, f"{row.strategy} on {row.dataset}, seed {seed}: {got}"
            out[row.dataset].append(got)
    return out, ""


def image_intervals(cases: list, best: Candidate, others: dict[str, Candidate | None]) -> ImageIntervals:
    """The bootstrap over test images for a recommendation: the best's interval, each other's difference."""
    def rows(c: Candidate) -> list[Row]:
        return [case.rows[c.strategy] for case in cases]

    best_src, note = _sources(rows(best), sorted(best.by_seed))
    if note:
        return ImageIntervals({}, None, None, None, note)
    labels: dict[str, np.ndarray] = {}
    for dataset, sources in best_src.items():
        found = [s for s in sources if isinstance(s, bootstrap.Predicted)]
        if not found:
            return ImageIntervals({}, None, None, None, f"{best.strategy} on {dataset}: every seed failed")
        labels[dataset] = found[0].labels
    images = {d: len(y) for d, y in labels.items()}
    w = {d: bootstrap.weights(n) for d, n in images.items()}
    task = rows(best)[0].task

    def draws(c: Candidate, seeds: list[int]) -> tuple[np.ndarray | None, str]:
        src, why = _sources(rows(c), seeds)
        for d, sources in src.items():
            if any(isinstance(s, bootstrap.Predicted) and not np.array_equal(s.labels, labels[d]) for s in sources):
                why = f"{c.strategy} on {d}: not the test set the best was scored on"
        return (None, why) if why else (bootstrap.score_draws(rows(c)[0].metric, task, src, w), "")

    best_draws, why = draws(best, sorted(best.by_seed))
    if best_draws is None:
        return ImageIntervals(images, None, None, None, why)
    diffs: dict[str, tuple[float, float] | None] = {}
    for role, other in others.items():
        if other is None or other is best:
            diffs[role] = None
            continue
        seeds = sorted(best.by_seed.keys() & other.by_seed.keys())
        a, why = draws(other, seeds)
        b, _ = draws(best, seeds)
        if a is None or b is None:
            return ImageIntervals(images, bootstrap.interval(best_draws), None, None, why)
        diffs[role] = bootstrap.interval(a - b)
    return ImageIntervals(images, bootstrap.interval(best_draws), diffs.get("runner_up"), diffs.get("cheapest"), "")


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
        on_val = all(c.val is not None for c in candidates)
        score = (lambda c: c.val) if on_val else (lambda c: c.summary.mean or 0.0)
        ranked = sorted(candidates, key=lambda c: (-score(c), _cost_key(c)))
        best, runner = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        if runner is None:
            significant, test, p = None, "no runner-up", None
        else:
            significant, test, p = _significance(best, runner)
        verdicts = {c.strategy: non_inferior(c, best) for c in candidates}
        if best.summary.n < MIN_SEEDS:
            cheapest = None
            note = f"not testable: the best has {best.summary.n} seed(s), non-inferiority needs {MIN_SEEDS}"
        else:
            within = [c for c in candidates if verdicts[c.strategy]]
            cheapest = min(within, key=_cost_key)
            note = ("the best itself" if cheapest is best else
                    f"{len(within)} non-inferior within {MARGIN * 100:g} pp (one-sided 95%, paired over seeds)")
        metrics = sorted({c.metric for c in cases})
        images = image_intervals(cases, best, {"runner_up": runner, "cheapest": cheapest})
        out.append(Recommendation(modality, backbone, sorted(c.dataset for c in cases), "/".join(metrics), best,
                                  runner, significant, test, p, cheapest, note, ranked,
                                  "validation" if on_val else "test (no validation metric recorded)", images))
    return out
