"""``python -m medft_bench.leaderboard compare A/ B/``: two result sets side by side, by metric.

Records are matched by cell (``cell_id``) and configuration (``config_hash``): a cell whose configuration is
the same in both shows its test metric and training time in A and B and their differences; a cell present in
both under different configurations is listed apart (its numbers are not a like-for-like comparison), as
are cells only in A and only in B. Each side is read as the leaderboard reads it (schema validation,
duplicates counted once, :func:`medft_bench.leaderboard.load.load_inputs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from medft_bench.leaderboard.aggregate import METRIC_NAMES, metric_for
from medft_bench.leaderboard.load import Inputs, Run, load_inputs
from medft_bench.leaderboard.tables import DASH, Cell, Table, c, delta_style, left, pct, pp, right, seconds


@dataclass
class Comparison:
    a: Inputs
    b: Inputs
    matched: list[tuple[Run, Run]]  # same cell and configuration
    changed: list[tuple[Run, Run]]  # same cell, another configuration
    only_a: list[Run]
    only_b: list[Run]
    metric: str | None  # the --metric override, or None (each dataset's primary metric)


def compare(a: list[str | os.PathLike[str]], b: list[str | os.PathLike[str]], metric: str | None = None) -> Comparison:
    ins_a, ins_b = load_inputs(list(a)), load_inputs(list(b))
    by_a = {r.cell_id: r for r in ins_a.runs}
    by_b = {r.cell_id: r for r in ins_b.runs}
    both = sorted(by_a.keys() & by_b.keys())
    return Comparison(ins_a, ins_b,
                      matched=[(by_a[k], by_b[k]) for k in both if by_a[k].config_hash == by_b[k].config_hash],
                      changed=[(by_a[k], by_b[k]) for k in both if by_a[k].config_hash != by_b[k].config_hash],
                      only_a=[by_a[k] for k in sorted(by_a.keys() - by_b.keys())],
                      only_b=[by_b[k] for k in sorted(by_b.keys() - by_a.keys())], metric=metric)


def _value(run: Run, metric: str) -> float | None:
    if run.status != "ok":
        return None
    v = (run.metrics or {}).get("test", {}).get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def _shown(run: Run, metric: str) -> Cell:
    v = _value(run, metric)
    return c(pct(v)) if v is not None else c(run.status if run.status != "ok" else f"no {metric}", "warn")


def _pair_rows(pairs: list[tuple[Run, Run]], metric: str | None, hashes: bool) -> list[list[Cell]]:
    rows = []
    for ra, rb in pairs:
        m = metric_for(ra, metric)
        va, vb = _value(ra, m), _value(rb, m)
        d = None if va is None or vb is None else vb - va
        ta, tb = ra.costs.get("train_s"), rb.costs.get("train_s")
        rel = None if not ta or tb is None else (tb - ta) / ta
        row = [c(ra.cell_id), *([c(ra.config_hash), c(rb.config_hash)] if hashes else []), c(METRIC_NAMES[m]),
               _shown(ra, m), _shown(rb, m), c(pp(d), None if d is None else delta_style(d)),
               c(seconds(ta)), c(seconds(tb)), c(DASH if rel is None else f"{rel * 100:+.0f}%")]
        rows.append(row)
    return rows


def _only_row(run: Run, metric: str | None) -> list[Cell]:
    m = metric_for(run, metric)
    return [c(run.cell_id), c(run.config_hash), c(run.status), c(METRIC_NAMES[m]), _shown(run, m)]


def comparison_tables(cmp: Comparison, a_name: str, b_name: str) -> list[Table]:
    values = [left("metric"), right(f"A ({a_name})"), right(f"B ({b_name})"), right("B − A (pp)"), right("A train s"),
              right("B train s"), right("train s B vs A")]
    unit = "test metric in %, B − A in percentage points; train s: training seconds of the cell"
    tables = [Table("matched", f"Same cell, same configuration: {len(cmp.matched)}",
                    [left("cell", key=True), *values], _pair_rows(cmp.matched, cmp.metric, False), caption=unit,
                    notes=["Matched by cell_id and config_hash. A diverged or failed cell shows its status instead "
                           "of a value."])]
    if cmp.changed:
        tables.append(Table("changed", f"Same cell, another configuration: {len(cmp.changed)}",
                            [left("cell", key=True), left("config A"), left("config B"), *values],
                            _pair_rows(cmp.changed, cmp.metric, True), caption=unit,
                            notes=["The configuration (config_hash: settings, weights, data, strategy parameters) "
                                   "differs: not a like-for-like comparison."]))
    for key, runs, where in (("only-a", cmp.only_a, f"A ({a_name})"), ("only-b", cmp.only_b, f"B ({b_name})")):
        if runs:
            tables.append(Table(key, f"Only in {where}: {len(runs)}",
                                [left("cell", key=True), left("config"), left("status"), left("metric"),
                                 right("value")],
                                [_only_row(r, cmp.metric) for r in runs]))
    return tables
