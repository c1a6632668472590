"""Answers per modality: for each modality x backbone of a group, the strategy selected on VALIDATION, every
strategy's test score, and the set of strategies the data cannot separate from the best (:mod:`separation`).

A strategy competes when it has a result in every case (dataset) of the modality and backbone, so that all
compare on the same datasets. Its score per seed is the mean over those datasets of that seed's metric (the
group's ranking metric, AUC); a failed seed (not ok, or no better than the majority class on the metric) counts
as the chance score on validation and on test, so that a strategy that breaks is not recommended on its
surviving seeds. Each (dataset, seed) contributes its per-image predictions to the bootstrap over images
(:mod:`bootstrap`); the draws are shared by every strategy of the case, so differences are paired image by
image, and never by seed.

- best: the highest validation mean; ``picked``: how often each strategy is that pick under resampling;
- not separable: the best and every strategy whose test score is not shown below the best's (Games-Howell's
  simultaneous intervals over the case's strategies, each carrying seeds and test images; :mod:`separation`);
- cheapest: the least training time per seed inside the not-separable set, shown as the cheap choice only when
  its non-inferiority to the best within MARGIN is shown at the data's noise (one-sided 95% lower bound of
  (cheapest - best) above -MARGIN); otherwise the answer says it cannot tell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medft_bench.leaderboard import bootstrap
from medft_bench.leaderboard.groups import Case, Row
from medft_bench.leaderboard.groups import GroupData as Group
from medft_bench.leaderboard.load import Run
from medft_bench.leaderboard.names import strategy_sort_key
from medft_bench.leaderboard.separation import (
    Evidence,
    Separation,
    Spread,
    Versus,
    non_inferior,
    score,
    separate,
)
from medft_bench.leaderboard.stats import group_by
from medft_bench.vocabulary import CLAIMS_METRIC

MARGIN = 0.01  # non-inferiority margin: 1 percentage point of the metric


@dataclass(frozen=True)
class Standing:
    """One strategy in an answer: its test score with the interval, validation mean, how often it is the
    validation pick, its comparison with the best (None for the best), the other metric beside it, its costs."""

    strategy: str
    score: Spread
    seeds: int
    failed: int  # seeds counted as failed (chance score)
    val: float | None
    picked: float | None
    versus: Versus | None
    beside: float | None  # balanced accuracy (the claims' metric) mean over the same cells, failures counted
    train_s: float | None  # mean training seconds per seed over the datasets (tuned: the whole sweep)
    peak_mem_mb: float | None = None
    peak_mem_kind: str | None = None  # "gpu" (allocated) or "host" (resident, CPU runs)
    trainable_params: int | None = None

    @property
    def mean(self) -> float:
        return self.score.value


@dataclass(frozen=True)
class Recommendation:
    modality: str
    backbone: str
    datasets: list[str]
    metric: str  # the metric, or several joined with "/" when the datasets use different ones
    best: Standing
    standings: list[Standing]  # the best, the rest of the not-separable set, then the separable ones (by test)
    not_separable: list[str]  # strategy names, the best first
    cheapest: Standing | None  # the cheapest of the not-separable set, when it is not the best
    cheapest_shown: bool | None  # its non-inferiority within MARGIN: shown, not shown, or not testable (None)
    cheapest_lower: float | None  # the one-sided 95% lower bound of (cheapest - best)
    selected_on: str
    noise: str  # what the intervals carry ("seeds and test images", or seeds only and why)
    left_out: dict[str, str] = field(default_factory=dict)  # strategy -> why it is not in the answer

    def standing(self, strategy: str) -> Standing:
        return next(s for s in self.standings if s.strategy == strategy)


def _evidence(rows: list[Row], weights: dict[str, dict[str, np.ndarray]]) -> tuple[Evidence, str]:
    """A strategy's per-seed scores over its datasets (failures at chance), with its image-resample draws when
    every (dataset, seed) kept predictions; else the draws are left out and the reason returned."""
    base = _evidence_seeds(rows)
    seeds = sorted(set.intersection(*(set(r.by_seed_all) for r in rows)))
    draws: dict[str, np.ndarray] = {}
    why = ""
    for split in ("test", "val"):
        per_dataset = []
        for row in rows:
            ok = {r.seed: r for r in row.ok}
            cols = []
            for s in seeds:
                w = weights[split][row.dataset]
                if s in row.failed_seeds:  # its chance score, under every draw
                    cols.append(np.full(len(w), row.by_seed_all[s][0]))
                    continue
                got = bootstrap.load_split(ok[s], split)
                if isinstance(got, str):
                    why = why or f"{row.strategy} on {row.dataset}, seed {s}: {got}"
                    break
                if len(got.labels) != w.shape[1]:
                    why = why or f"{row.strategy} on {row.dataset}: not the {split} set the others were scored on"
                    break
                cols.append(_metric_draws(ok[s], split, row.metric, row.task, got, w))
            if why:
                break
            per_dataset.append(np.stack(cols, axis=1))
        if why:
            break
        draws[split] = np.mean(per_dataset, axis=0)
    if why:
        return base, why
    return Evidence(base.test, base.val, draws["test"], draws["val"] if base.val is not None else None), ""


_DRAWS: dict[tuple[str, int, str, str, tuple[int, ...]], np.ndarray] = {}


def _metric_draws(run: Run, split: str, metric: str, task: str, got: bootstrap.Predicted,
                  w: np.ndarray) -> np.ndarray:
    """:func:`bootstrap.metric_draws` of one record's split, computed once per page: the answer and the
    results table (:func:`row_scores`) read the same draws (``w`` is fixed by the split's size)."""
    try:
        mtime = Path(run.path).stat().st_mtime_ns
    except OSError:
        mtime = 0
    key = (str(run.path), mtime, split, metric, w.shape)
    if key not in _DRAWS:
        _DRAWS[key] = bootstrap.metric_draws(metric, task, got, w)
    return _DRAWS[key]


def _split_sizes(cases: list[Case]) -> dict[str, dict[str, int]]:
    """split -> dataset -> images, from the first record with predictions of each case."""
    out: dict[str, dict[str, int]] = {"test": {}, "val": {}}
    for case in cases:
        for row in case.rows.values():
            for run in row.ok:
                for split in out:
                    if case.dataset not in out[split]:
                        got = bootstrap.load_split(run, split)
                        if not isinstance(got, str):
                            out[split][case.dataset] = len(got.labels)
    return out


def _standing(strategy: str, rows: list[Row], sep: Separation, ev: Evidence) -> Standing:
    costs = [r.costs["train_s"] for r in rows]
    mems = [(r.costs["peak_mem_mb"], r.costs["peak_mem_kind"]) for r in rows if r.costs.get("peak_mem_mb") is not None]
    trainable = [r.costs["trainable_params"] for r in rows if r.costs.get("trainable_params") is not None]
    mem, kind = max(mems) if mems else (None, None)
    beside = [r.others.get(CLAIMS_METRIC) for r in rows]
    return Standing(
        strategy, sep.scores[strategy], ev.n, sum(len(r.failed_seeds) for r in rows),
        None if ev.val is None else float(np.mean(ev.val)), sep.picked.get(strategy), sep.versus.get(strategy),
        None if any(b is None or b.mean is None for b in beside) else float(np.mean([b.mean for b in beside])),
        None if any(c is None for c in costs) else sum(costs) / len(costs), mem, kind,
        max(trainable) if trainable else None)


def _cost_key(strategy: str, rows: list[Row]) -> tuple[float, tuple[int, str]]:
    costs = [r.costs["train_s"] for r in rows]
    return (float("inf") if any(c is None for c in costs) else sum(costs) / len(costs), strategy_sort_key(strategy))


def answer(cases: list[Case]) -> Recommendation | None:
    """The answer for one modality and backbone (its cases: one per dataset), or None without a competitor."""
    strategies = sorted(set.intersection(*(set(c.rows) for c in cases)), key=strategy_sort_key)
    rows = {s: [c.rows[s] for c in cases] for s in strategies}
    rows = {s: rs for s, rs in rows.items() if set.intersection(*(set(r.by_seed_all) for r in rs))}
    # a method that did not complete as specified is another method: flagged in the tables, not an answer
    left_out = {s: f"method incomplete: {why}" for s, rs in rows.items() for r in rs for _, why in r.incomplete[:1]}
    rows = {s: rs for s, rs in rows.items() if s not in left_out}
    if not rows:
        return None
    sizes = _split_sizes(cases)
    weights = {split: {d: bootstrap.weights(n) for d, n in sizes[split].items()} for split in sizes}
    gathered = {}
    notes = set()
    # cheapest first: the selection breaks a validation tie in favour of the cheaper strategy
    for s in sorted(rows, key=lambda s: _cost_key(s, rows[s])):
        has_all = all(c.dataset in weights["test"] and c.dataset in weights["val"] for c in cases)
        ev, why = _evidence(rows[s], weights) if has_all else (_evidence_seeds(rows[s]), "no per-image predictions")
        gathered[s] = ev
        notes |= {why} if why else set()
    if notes:  # one strategy without draws: every interval is on seeds alone, so that all compare alike
        gathered = {s: Evidence(ev.test, ev.val) for s, ev in gathered.items()}
    sep = separate(gathered)
    standings = {s: _standing(s, rows[s], sep, gathered[s]) for s in gathered}
    rest = sorted((s for s in gathered if s not in sep.not_separable), key=lambda s: -sep.scores[s].value)
    order = [*sep.not_separable, *rest]
    best = standings[sep.best]
    cheap = min(sep.not_separable, key=lambda s: _cost_key(s, rows[s]))
    cheapest, shown, lower = None, None, None
    if cheap != sep.best:
        cheapest = standings[cheap]
        shown, lower = non_inferior(gathered[cheap], gathered[sep.best], MARGIN)
    noise = "seeds and test images" if sep.images else "seeds only: " + "; ".join(sorted(notes))
    return Recommendation(cases[0].modality, cases[0].backbone, sorted(c.dataset for c in cases),
                          "/".join(sorted({c.metric for c in cases})), best, [standings[s] for s in order],
                          sep.not_separable, cheapest, shown, lower, sep.selected_on, noise, left_out)


def _evidence_seeds(rows: list[Row]) -> Evidence:
    seeds = sorted(set.intersection(*(set(r.by_seed_all) for r in rows)))
    test = np.array([np.mean([r.by_seed_all[s][0] for r in rows]) for s in seeds])
    vals = [[r.by_seed_all[s][1] for r in rows] for s in seeds]
    val = None if any(v is None for vs in vals for v in vs) else np.array([np.mean(vs) for vs in vals])
    return Evidence(test, val)


def row_scores(group: Group) -> dict[tuple[str, str, str], Spread]:
    """(dataset, backbone, strategy) -> the row's test score (failures counted) with the answer's 95% interval
    (seeds and test images), so that a strategy's number has one spread wherever it is shown."""
    out = {}
    for case in group.cases:
        sizes = _split_sizes([case])
        weights = {split: {d: bootstrap.weights(n) for d, n in sizes[split].items()} for split in sizes}
        drawn = case.dataset in weights["test"] and case.dataset in weights["val"]
        for s, row in case.rows.items():
            if not row.by_seed_all:
                continue
            ev, why = _evidence([row], weights) if drawn else (_evidence_seeds([row]), "")
            out[(case.dataset, case.backbone, s)] = score(ev)
    return out


def recommend(group: Group) -> list[Recommendation]:
    """One answer per (modality, backbone) of the group that has at least one competing strategy."""
    by_key = group_by(group.cases, lambda c: (c.modality, c.backbone))
    return [rec for _, cases in sorted(by_key.items()) if (rec := answer(cases)) is not None]
