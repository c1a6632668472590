"""``summary.json``: the aggregated tables, machine-readable (metric values as fractions, not %)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from medft_bench.io import json_safe
from medft_bench.leaderboard import bootstrap
from medft_bench.leaderboard.aggregate import Group, Row
from medft_bench.leaderboard.analysis import FROZEN_GAP
from medft_bench.leaderboard.group_key import tier_slug
from medft_bench.leaderboard.load import SUMMARY_SCHEMA, Inputs
from medft_bench.leaderboard.recommend import MARGIN, Standing
from medft_bench.leaderboard.separation import Spread
from medft_bench.leaderboard.stats import ALPHA, CI_LEVEL, MIN_DATASETS, MIN_SEEDS_CI
from medft_bench.leaderboard.survival import protocol_pairs, survival


def _row(r: Row, g: Group) -> dict[str, Any]:
    s = r.summary
    return {
        "dataset": r.dataset, "backbone": r.backbone, "strategy": r.strategy,
        "strategy_label": g.label(r.strategy),
        "metric": r.metric, "task": r.task, "modality": r.modality,
        "n": s.n, "seeds": r.seeds, "values": r.values, "mean": s.mean, "std": s.std,
        "ci95": list(s.ci) if s.ci else None,
        "other_metrics": {m: {"n": o.n, "mean": o.mean, "std": o.std} for m, o in r.others.items()},
        "costs": r.costs,
        "diverged": [x.cell_id for x in r.diverged], "failed": [x.cell_id for x in r.failed],
        "metric_missing": [x.cell_id for x in r.no_metric],
        "majority_flags": [{"cell_id": x.cell_id, "reason": why} for x, why in r.majority],
        "grid_edges": r.grid_edges,  # tuned: seeds whose chosen rate was the grid's lowest/highest, of "of"
    }


def _group(g: Group, plots: dict[str, str]) -> dict[str, Any]:
    return {
        "tier": g.key.tier, "img_size": g.key.img_size, "synthetic": g.key.synthetic, "weights": g.key.weights,
        "protocol": g.key.protocol,
        "label": g.key.label, "caveat": g.key.caveat, "slug": g.key.slug, "page": f"{tier_slug(g.key.tier)}.md",
        "plots": plots, "metrics_used": g.metrics_used, "status": g.status_counts(), "strategies": g.strategies,
        "rows": [_row(r, g) for r in g.rows],
        "cases": [{"dataset": c.dataset, "backbone": c.backbone, "metric": c.metric, "modality": c.modality,
                   "means": {s: r.mean for s, r in c.rows.items()}, "ranks": c.ranks, "delta_vs_ft": c.deltas}
                  for c in g.cases],
        "average_ranks": {s: {"rank": v[0], "cases": v[1]} for s, v in g.avg_ranks.items()},
        "tests_vs_ft": g.tests,  # per strategy: p, p_holm (failures counted), ok_only.{p, p_holm}, within_case
        "common_strategies": g.common_strategies,
        "average_ranks_common": g.avg_ranks_common,
        "claims": [asdict(c) for c in g.claims],
        "recommendations": _recommendations(g),
        # What the pages show beyond the tests, from the same objects (Group.analysis): JSON and pages agree.
        "versus_ft": {s: asdict(v) for s, v in g.analysis.versus_ft.items()},
        "frozen_references": [asdict(f) for f in g.analysis.frozen],
    }


def _spread(sp: Spread) -> dict[str, Any]:
    return {"value": sp.value, "ci95": list(sp.interval) if sp.interval else None, "df": sp.df}


def _standing(st: Standing, g: Group) -> dict[str, Any]:
    v = st.versus
    return {"strategy": st.strategy, "strategy_label": g.label(st.strategy), "n": st.seeds, "failed": st.failed,
            "mean": st.mean, "ci95": list(st.score.interval) if st.score.interval else None, "val": st.val,
            "picked": st.picked, "balanced_acc": st.beside,
            "minus_best": None if v is None else {**_spread(v.diff), "p": v.p, "below": v.below},
            "train_s": st.train_s, "peak_mem_mb": st.peak_mem_mb, "peak_mem_kind": st.peak_mem_kind,
            "trainable_params": st.trainable_params}


def _recommendations(g: Group) -> list[dict[str, Any]]:
    return [{"modality": r.modality, "backbone": r.backbone, "datasets": r.datasets, "metric": r.metric,
             "best": r.best.strategy, "not_separable": r.not_separable, "selected_on": r.selected_on,
             "noise": r.noise, "standings": [_standing(st, g) for st in r.standings],
             "cheapest": None if r.cheapest is None else r.cheapest.strategy,
             "cheapest_non_inferior": r.cheapest_shown, "cheapest_lower_bound": r.cheapest_lower, "margin": MARGIN,
             "left_out": r.left_out}
            for r in g.analysis.recommendations]


def build_summary(groups: list[Group], inputs: Inputs, meta: dict[str, Any], metric: str | None,
                  plots: dict[str, dict[str, str]], files: list[str]) -> dict[str, Any]:
    return {
        "schema": SUMMARY_SCHEMA,
        "inputs": inputs.sources,
        "metric_option": metric,
        "rules": {
            "values": "fractions of 1 (x100 = %); deltas and gains: fractions (x100 = percentage points)",
            "std": "sample standard deviation over seeds (ddof=1); null for one seed",
            "ci95": f"mean +/- t({0.5 + CI_LEVEL / 2}, n-1) * std / sqrt(n), only for n >= {MIN_SEEDS_CI}",
            "ranks": "within a (dataset, backbone) case; higher metric = rank 1; ties get the average rank",
            "tests_vs_ft": "unit = dataset: per dataset the mean over its backbones of (strategy - FT) case means "
                           "over seeds; two-sided one-sample t-test over datasets (n = datasets tested, zeros "
                           f"included, n >= {MIN_DATASETS}); p_holm: Holm over the group's strategies; failures "
                           "counted as the chance score (ok_only: dropped); within_case: Welch t over one case's "
                           "seeds (replicates of that case only)",
            "versus_ft": "per strategy other than FT: wins/ties/losses of its case means over seeds against FT's "
                         "(ties: equal within rounding), and within_case_above/below: cases where Welch's t over "
                         f"seeds gives p < {ALPHA} above or below FT, of within_case_tested cases",
            "frozen_references": "per case with LP or kNN: their means, lp_minus_knn and lp_ft_minus_lp (fractions), "
                                 "lp_unconverged of lp_seeds (probe solves that did not converge), feature_cosine "
                                 f"(LP's records, else kNN's), below_lp; probe_suspect: LP below kNN by more than "
                                 f"{FROZEN_GAP}; lp_ft_lost: LP-FT below LP",
            "failures": "means, ranks, std, CI: ok seeds only (failed and diverged listed); tests, claims, "
                        "recommendations: a failed or diverged seed counts as the majority-class (chance) "
                        "score: balanced accuracy 1/classes, AUC 0.5, ACC the majority share, F1/mAP 0; claims "
                        "also without failures",
            "recommendations": "per modality x backbone: strategies with a result on every dataset of the modality; "
                               "score per seed = mean over the datasets of the ranking metric (failed seeds at the "
                               "chance score); best: the highest VALIDATION mean (selected_on); picked: share of "
                               "resamples (seeds within each strategy, validation images) in which a strategy is "
                               "that pick; ci95: mean +/- t(0.975, df) * sqrt(seed variance of the mean (Welch) + "
                               "variance over a bootstrap of the test images (" + str(bootstrap.B) + " draws shared "
                               "by every strategy)), df Welch-Satterthwaite; minus_best: strategy - best on test, "
                               "minus_best.ci95 and p: Games-Howell's simultaneous interval and p over the case's "
                               "strategies (studentized range, Welch-Satterthwaite df per pair), below: under the best "
                               f"with p < {ALPHA}; not_separable: the best, then every strategy not below it, by "
                               "test mean; cheapest: the least train_s in not_separable when it is not the best, "
                               "cheapest_non_inferior: its one-sided 95% lower bound of (cheapest - best) above "
                               f"-margin ({MARGIN}) (null: no interval); noise: what the intervals carry",
        },
        "metadata": meta,
        "problems": [asdict(p) for p in inputs.problems],
        "records_counted_once": [asdict(n) for n in inputs.notes],
        "groups": [_group(g, plots.get(g.key.slug, {})) for g in groups],
        "survival": [{"study_group": a.key.slug, "tuned_group": b.key.slug, "label": a.key.setting_label,
                      "strategies": [{"strategy": sv.strategy, "strategy_label": b.label(sv.strategy),
                                      "delta_vs_ft_study": sv.study, "delta_vs_ft_tuned": sv.tuned,
                                      "sign_flip": sv.flip, "cases": [list(k) for k in sv.cases]}
                                     for sv in survival(a, b)]}
                     for a, b in protocol_pairs(groups)],
        "files": files,
    }


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(json_safe(summary), indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
