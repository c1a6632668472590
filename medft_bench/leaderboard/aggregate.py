"""From runs to tables: groups that are never averaged together, rows over seeds, cases with ranks and
deltas against FT.

A *group* is (tier, synthetic data?, weights kind, image size, protocol; :mod:`group_key`): results from
different groups are never averaged, ranked or compared; the one exception is :mod:`survival`, which sets a
strategy's mean Δ against FT under the study's protocol next to its Δ under the tuned one.

Inside a group a *row* is (dataset, backbone, strategy) over seeds, and a *case* is (dataset, backbone):
strategies are ranked and compared with FT within a case.

The data model (``Row``, ``Case``, ``GroupData``, ``BASELINE``) lives in :mod:`groups`, below the modules that
draw conclusions from a group (:mod:`analysis`, :mod:`recommend`, :mod:`claims`); this module builds groups, calls
them, and is where the leaderboard's readers import ``Group`` (with its ``analysis``), ``Row`` and ``Case`` from.
"""

from __future__ import annotations

import functools
from typing import Any

from medft_bench.gates import majority_causes
from medft_bench.leaderboard import stats
from medft_bench.leaderboard.analysis import Analysis, analyze
from medft_bench.leaderboard.claims import compute_claims
from medft_bench.leaderboard.group_key import GroupKey, group_key
from medft_bench.leaderboard.groups import BASELINE, Case, GroupData, Row
from medft_bench.leaderboard.load import Run
from medft_bench.leaderboard.names import canonical_name, lookup, strategy_sort_key
from medft_bench.vocabulary import CLAIMS_METRIC, METRICS, RANKING_METRIC, STUDY_STRATEGIES, primary_metric


class Group(GroupData):
    """A group with its conclusions (``analysis``): what :func:`aggregate` returns and every table reads."""

    @functools.cached_property
    def analysis(self) -> Analysis:
        """The group's recommendations, strategies against FT and frozen-feature references, computed on first
        use and kept: the tables and summary.json read the same objects (:mod:`analysis`)."""
        return analyze(self)


def metric_for(run: Run, override: str | None) -> str:
    """The metric a run's dataset is ranked by: ``override``, else :data:`medft_bench.vocabulary.RANKING_METRIC`
    (AUC, threshold-free) when the run recorded it, else the record's primary metric."""
    if override:
        return override
    if _test_value(run, RANKING_METRIC) is not None or run.status != "ok":
        return RANKING_METRIC
    if run.metrics and run.metrics.get("primary") in METRICS:
        return str(run.metrics["primary"])
    return primary_metric(run.task)


def _split_value(run: Run, split: str, metric: str) -> float | None:
    value = ((run.metrics or {}).get(split) or {}).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def _test_value(run: Run, metric: str) -> float | None:
    return _split_value(run, "test", metric)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _costs(ok: list[Run]) -> dict[str, Any]:
    """Mean training and wall-clock seconds, the largest peak memory (GPU allocated when every run has
    it, else host RSS, labelled), the largest trainable-parameter count."""
    def vals(key: str) -> list[float]:
        return [float(r.costs[key]) for r in ok if isinstance(r.costs.get(key), (int, float))]

    gpu = vals("peak_gpu_allocated_mb")
    use_gpu = bool(ok) and len(gpu) == len(ok)
    mem = gpu if use_gpu else vals("peak_host_rss_mb")
    trainable = [int(r.costs["trainable_params"]) for r in ok if isinstance(r.costs.get("trainable_params"), int)]
    drift = [r.drift for r in ok if r.drift is not None]
    lrs = sorted({r.chosen_lr for r in ok if r.chosen_lr is not None})
    return {
        "chosen_lr": lrs,  # tuned cells: the learning rates chosen on validation (one per seed, distinct)
        "drift": _mean(drift),
        "kept_start": sum(1 for r in ok if r.costs.get("best_epoch") == -1),
        "head_only": sum(1 for r in ok if r.head_only_epochs),  # runs with an epoch that trained the head alone
        "train_s": _mean(vals("train_s")),
        "wall_s": _mean(vals("wall_s")),
        "peak_mem_mb": max(mem) if mem else None,
        "peak_mem_kind": ("gpu" if use_gpu else "host") if mem else None,
        "trainable_params": max(trainable) if trainable else None,
        "total_params": max((int(r.costs["total_params"]) for r in ok), default=None),
    }


def build_row(runs: list[Run], metric_override: str | None, dataset_majority: dict[str, Any] | None = None) -> Row:
    first = runs[0]
    metric = metric_for(first, metric_override)
    ok = sorted((r for r in runs if r.status == "ok"), key=lambda r: r.seed)
    with_metric = [r for r in ok if _test_value(r, metric) is not None]
    values = [_test_value(r, metric) for r in with_metric]
    others = {}
    for m in METRICS:
        vs = [v for v in (_test_value(r, m) for r in ok) if v is not None]
        others[m] = stats.summarize(vs)
    majority = []
    for r in ok:
        why = stats.majority_flag(r.task, (r.metrics or {}).get("test", {}), (r.metrics or {}).get("majority", {}))
        if why:
            majority.append((r, "; ".join([why, *majority_causes(r)])))
    chance = stats.chance_score(metric, first.task, _n_classes(first), dataset_majority)
    # no better than the majority class on this metric: a failure, scored as one
    at_chance = [r for r in with_metric if _test_value(r, metric) <= chance + 1e-12]
    failed_runs = [r for r in runs if r.status != "ok"] + at_chance
    counted = [r for r in with_metric if r not in at_chance]
    return Row(
        dataset=first.dataset, backbone=first.backbone, strategy=first.strategy, metric=metric, task=first.task,
        modality=first.modality, summary=stats.summarize(values), seeds=[r.seed for r in with_metric],
        values=values, ok=ok, diverged=sorted((r for r in runs if r.status == "diverged"), key=lambda r: r.seed),
        failed=sorted((r for r in runs if r.status == "failed"), key=lambda r: r.seed),
        no_metric=[r for r in ok if _test_value(r, metric) is None], majority=majority, others=others,
        costs=_costs(ok), val_values=[_split_value(r, "val", metric) for r in with_metric],
        values_all=(all_values := [_test_value(r, metric) for r in counted] + [chance for _ in failed_runs]),
        summary_all=stats.summarize(all_values),
        by_seed_all={**{r.seed: (_test_value(r, metric), _split_value(r, "val", metric)) for r in counted},
                     **{r.seed: (chance, chance) for r in failed_runs}},
        failed_seeds=sorted(r.seed for r in failed_runs),
        incomplete=[(r, r.incomplete_reason or "method incomplete") for r in ok if not r.method_complete],
    )


def _n_classes(run: Run) -> int | None:
    n = run.n_classes
    return n if n is not None and n > 0 else None


def _majority(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """dataset -> the test split's majority-class scores (``metrics.majority``) from any of its records."""
    out: dict[str, dict[str, Any]] = {}
    for run in sorted(runs, key=lambda r: r.path):
        maj = (run.metrics or {}).get("majority")
        if isinstance(maj, dict) and run.dataset not in out:
            out[run.dataset] = maj
    return out


def build_group(key: GroupKey, runs: list[Run], metric_override: str | None = None) -> Group:
    by_row = stats.group_by(runs, lambda run: (run.dataset, run.backbone, run.strategy))
    majority = _majority(runs)
    rows = [build_row(rs, metric_override, majority.get(rs[0].dataset)) for _, rs in sorted(
        by_row.items(), key=lambda kv: (kv[0][0], kv[0][1], strategy_sort_key(kv[0][2])))]
    strategies = sorted({r.strategy for r in rows}, key=strategy_sort_key)

    by_case = stats.group_by(rows, lambda row: row.case)
    cases = []
    for (dataset, backbone), rs in sorted(by_case.items()):
        measured = {r.strategy: r for r in rs if r.mean is not None}
        means_all = {r.strategy: r.summary_all.mean for r in rs if r.summary_all.mean is not None}
        ranks = stats.average_ranks({s: means_all[s] for s in measured})  # failures counted
        base = lookup(measured, BASELINE)
        deltas = {s: r.mean - base.mean for s, r in measured.items()} if base else {}
        base_all = lookup(means_all, BASELINE)
        deltas_all = {s: v - base_all for s, v in means_all.items()} if base_all is not None else {}
        cases.append(Case(dataset, backbone, rs[0].metric, rs[0].modality, measured, ranks, deltas, means_all,
                          deltas_all))

    group = Group(key, rows, cases, strategies, sorted(runs, key=lambda r: r.cell_id),
                  study_strategies=[s for s in strategies if canonical_name(s) in STUDY_STRATEGIES],
                  labels=_labels(runs))
    for s in strategies:
        rk = [c.ranks[s] for c in cases if s in c.ranks]
        if rk:
            group.avg_ranks[s] = (sum(rk) / len(rk), len(rk))
    if cases:
        group.common_strategies = [s for s in strategies if all(s in c.rows for c in cases)]
        if group.common_strategies:
            rk_common = [stats.average_ranks({s: c.means_all[s] for s in group.common_strategies}) for c in cases]
            group.avg_ranks_common = {s: sum(r[s] for r in rk_common) / len(rk_common)
                                      for s in group.common_strategies}
    base = group.baseline
    if base is not None:
        for s in strategies:
            if s != base:
                group.tests[s] = test_vs_baseline(cases, s, base)
        for key in ("", "ok_only"):
            family = {s: (t[key] if key else t) for s, t in group.tests.items()}
            adjusted = stats.holm({s: t["p"] for s, t in family.items() if t["p"] is not None})
            for s, t in family.items():
                t["p_holm"] = adjusted.get(s)
    # The study's claims keep the study's metric (macro accuracy): computed on the same runs ranked by it.
    claims_source = group if metric_override is not None or RANKING_METRIC == CLAIMS_METRIC else build_group(
        key, runs, CLAIMS_METRIC)
    group.claims = compute_claims(claims_source)
    return group


def test_vs_baseline(cases: list[Case], strategy: str, base: str) -> dict[str, Any]:
    """``strategy`` against FT at the independent unit, the dataset: per dataset, the mean over its backbones
    of the case differences (strategy mean - FT mean over seeds), then a two-sided one-sample t-test over the
    datasets. Failures counted (a failed or diverged seed scores the chance score); ``ok_only`` the same with
    them dropped. ``within_case``: per case, Welch's t over seeds, evidence about that case only."""
    def over_datasets(deltas: dict[tuple[str, str], float]) -> dict[str, Any]:
        per_dataset = stats.dataset_means(deltas)
        out = stats.t_test(list(per_dataset.values()), "two-sided")
        out.update(cases=len(deltas), per_dataset=per_dataset)
        return out

    result = over_datasets({c.key: c.deltas_all[strategy] for c in cases if strategy in c.deltas_all})
    result["failures_counted"] = True
    result["ok_only"] = over_datasets({c.key: c.deltas[strategy] for c in cases if strategy in c.deltas})
    within = []
    for c in cases:
        if strategy in c.rows and base in c.rows:
            a, b = c.rows[strategy].values, c.rows[base].values
            within.append({"dataset": c.dataset, "backbone": c.backbone, "seeds": [len(a), len(b)],
                           "delta": c.deltas[strategy], "p": stats.welch_within_case(a, b)})
    result["within_case"] = within
    return result


def _labels(runs: list[Run]) -> dict[str, str]:
    """strategy -> label, from the records (the latest finished wins should a strategy have been relabelled);
    records written before strategies declared labels have none (the name is shown)."""
    out: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: (r.finished_ts, r.path)):
        if run.label:
            out[run.strategy] = run.label
    return out


def aggregate(runs: list[Run], metric_override: str | None = None) -> list[Group]:
    """Split runs into groups that are never averaged together, and aggregate each."""
    if metric_override is not None and metric_override not in METRICS:
        raise ValueError(f"unknown metric {metric_override!r}; choose one of {', '.join(METRICS)}")
    by_group = stats.group_by(runs, group_key)
    return [build_group(k, by_group[k], metric_override) for k in sorted(by_group, key=GroupKey.sort_key)]
