"""Tidy CSV next to ``summary.json``: ``records.csv`` (one row per counted record, any status) and
``aggregates.csv`` (one row per (group, dataset, backbone, strategy) over seeds). Metric values are fractions
of 1, as in ``summary.json``; empty fields are missing values."""

from __future__ import annotations

import csv
import io
from typing import Any

from medft_bench.leaderboard.aggregate import Group
from medft_bench.text import csv_value
from medft_bench.vocabulary import METRICS

RECORDS_CSV = "records.csv"
AGGREGATES_CSV = "aggregates.csv"
GROUP_FIELDS = ("group", "tier", "img_size", "synthetic", "weights", "protocol", "official_file")


def _group_fields(g: Group) -> list[Any]:
    k = g.key
    return [k.slug, k.tier, k.img_size, k.synthetic, k.weights, k.protocol, not k.unofficial]


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else csv_value(v) for v in row])  # no formula, no control character
    return buf.getvalue()


def records_csv(groups: list[Group]) -> str:
    """One row per record the leaderboard counted (ok, diverged and failed), with its group."""
    header = [*GROUP_FIELDS, "dataset", "modality", "task", "backbone", "strategy", "strategy_label", "seed", "status",
              "metric", "value", *(f"test_{m}" for m in METRICS), "train_s", "wall_s", "peak_gpu_allocated_mb",
              "peak_host_rss_mb", "trainable_params", "chosen_lr", "cell_id", "config_hash", "path"]
    rows = []
    metric_of = {(r.dataset, r.backbone, r.strategy): r.metric for g in groups for r in g.rows}
    for g in groups:
        for run in g.runs:
            test = (run.metrics or {}).get("test", {})
            metric = metric_of.get((run.dataset, run.backbone, run.strategy))
            costs = run.costs
            rows.append([*_group_fields(g), run.dataset, run.modality, run.task, run.backbone, run.strategy,
                         g.label(run.strategy), run.seed, run.status, metric, test.get(metric) if metric else None,
                         *(test.get(m) for m in METRICS), costs.get("train_s"), costs.get("wall_s"),
                         costs.get("peak_gpu_allocated_mb"), costs.get("peak_host_rss_mb"),
                         costs.get("trainable_params"), run.chosen_lr, run.cell_id, run.config_hash, run.path])
    return _csv(header, rows)


def aggregates_csv(groups: list[Group]) -> str:
    """One row per (group, dataset, backbone, strategy): mean, std and CI over seeds, rank and Δ vs FT in its
    case, mean costs."""
    header = [*GROUP_FIELDS, "dataset", "modality", "backbone", "strategy", "strategy_label", "metric", "n", "mean",
              "std", "ci95_low", "ci95_high", "rank", "delta_vs_ft", "train_s", "wall_s", "peak_mem_mb",
              "peak_mem_kind", "trainable_params", "diverged", "failed"]
    rows = []
    for g in groups:
        cases = {c.key: c for c in g.cases}
        for r in g.rows:
            case = cases.get(r.case)
            s = r.summary
            rows.append([*_group_fields(g), r.dataset, r.modality, r.backbone, r.strategy, g.label(r.strategy),
                         r.metric, s.n, s.mean, s.std, s.ci[0] if s.ci else None, s.ci[1] if s.ci else None,
                         case.ranks.get(r.strategy) if case else None, case.deltas.get(r.strategy) if case else None,
                         r.costs["train_s"], r.costs["wall_s"], r.costs["peak_mem_mb"], r.costs["peak_mem_kind"],
                         r.costs["trainable_params"], len(r.diverged), len(r.failed)])
    return _csv(header, rows)
