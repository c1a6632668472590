"""``python -m medft_bench.leaderboard compare A/ B/``: two result sets side by side, by metric.

Records are matched by cell (``cell_id``) and configuration (``config_hash``; a record written under an earlier
identity version by the hash a newer record names for it, ``RecordView.same_configuration``): a cell whose
configuration is the same in both shows its test metric and training time in A and B and their differences; a
cell present in both under different configurations is listed apart (its numbers are not a like-for-like
comparison), as are cells only in A and only in B. Each side is read as the leaderboard reads it (schema validation,
duplicates counted once, :func:`medft_bench.leaderboard.load.load_inputs`).

For a cell under another configuration, :func:`differences` names the settings that differ (``config.train.lr:
0.001 → 0.0001``). :func:`regressions` is the regression gate of ``compare --fail-on-drop PP``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from medft_bench.leaderboard.aggregate import metric_for
from medft_bench.leaderboard.load import Inputs, Run, load_inputs
from medft_bench.leaderboard.names import strategy_sort_key
from medft_bench.leaderboard.stats import group_by, same
from medft_bench.leaderboard.tables.format import DASH, delta_style, pct, pp, seconds
from medft_bench.leaderboard.tables.model import Cell, Table, cell, left, right
from medft_bench.vocabulary import METRIC_NAMES

CELL = left("cell", key=True, wrap=100)  # cell ids stay on one line


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
                      matched=[(by_a[k], by_b[k]) for k in both if by_a[k].same_configuration(by_b[k])],
                      changed=[(by_a[k], by_b[k]) for k in both if not by_a[k].same_configuration(by_b[k])],
                      only_a=[by_a[k] for k in sorted(by_a.keys() - by_b.keys())],
                      only_b=[by_b[k] for k in sorted(by_b.keys() - by_a.keys())], metric=metric)


# What a configuration is made of, as a record writes it: the settings (``config``: train, strategy_params,
# weights, preprocess, amp, device...), the strategy's hyperparameters, the data's identity and the code's
# version. Never compared: what differs between any two runs (timestamps, host, timings), nor the data file's
# path (each machine has its own data folder: the MD5 / fingerprint says whether it is the same data).
DATA_IDENTITY = ("source", "synthetic", "md5", "fingerprint", "splits")
CODE_VERSION = ("version", "commit", "dirty")
VOLATILE = frozenset({"started", "finished", "host", "hostname", "timestamp", "time", "date"})
ABSENT = "(absent)"
SHOWN_DIFFERENCES = 8  # the "changed" table's notes list this many differences per cell, then how many more


@dataclass(frozen=True)
class Difference:
    path: str  # e.g. "config.train.lr"
    a: Any  # ABSENT when the setting is not in A's record
    b: Any

    def __str__(self) -> str:
        return f"{self.path}: {_setting(self.a)} → {_setting(self.b)}"


def _setting(value: Any) -> str:
    if value is ABSENT or isinstance(value, str):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)  # 0.0001, true, null, [0.5, 0.5]


def _volatile(key: str) -> bool:
    return key in VOLATILE or key.endswith("_s")  # a timing: train_s, wall_s...


def _diff(path: str, a: Any, b: Any, out: list[Difference]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys(), key=str):
            if not _volatile(str(key)):
                _diff(f"{path}.{key}", a.get(key, ABSENT), b.get(key, ABSENT), out)
    elif a != b or type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        out.append(Difference(path, a, b))


def _section(record: dict[str, Any], name: str, keys: tuple[str, ...] | None = None) -> Any:
    value = record.get(name, ABSENT)
    if keys is None or not isinstance(value, dict):
        return value
    return {k: value[k] for k in keys if k in value}


def differences(ra: Run, rb: Run) -> list[Difference]:
    """The settings that differ between two records of the same cell, each as ``path: A → B``: the record's
    ``config`` (nested), ``strategy.hparams``, the data's identity (``data.md5`` / ``data.fingerprint``, source,
    splits) and the code's version (``code.version``, ``code.commit``, ``code.dirty``). Timestamps, hosts and
    timings are never compared; a hyperparameter already listed under ``config.strategy_params`` with the same
    values is not listed again under ``strategy.hparams``."""
    out: list[Difference] = []
    a, b = ra.record, rb.record
    _diff("config", _section(a, "config"), _section(b, "config"), out)
    params = {(d.path.removeprefix("config.strategy_params"), _setting(d.a), _setting(d.b)) for d in out
              if d.path.startswith("config.strategy_params")}
    hparams: list[Difference] = []
    _diff("strategy.hparams", (a.get("strategy") or {}).get("hparams", ABSENT),
          (b.get("strategy") or {}).get("hparams", ABSENT), hparams)
    out += [d for d in hparams
            if (d.path.removeprefix("strategy.hparams"), _setting(d.a), _setting(d.b)) not in params]
    _diff("data", _section(a, "data", DATA_IDENTITY), _section(b, "data", DATA_IDENTITY), out)
    _diff("code", _section(a, "code", CODE_VERSION), _section(b, "code", CODE_VERSION), out)
    return out


def differences_text(ra: Run, rb: Run, limit: int = SHOWN_DIFFERENCES) -> str:
    """:func:`differences`, ``; ``-separated (the first ``limit``, then how many more); "none recorded" when the
    records' settings are the same (the hash covers something a record does not show, e.g. a strategy's
    version)."""
    diffs = differences(ra, rb)
    if not diffs:
        return "none recorded"
    lines = [str(d) for d in diffs[:limit]]
    if len(diffs) > limit:
        lines.append(f"(+{len(diffs) - limit} more)")
    return "; ".join(lines)


def _value(run: Run, metric: str) -> float | None:
    if run.status != "ok":
        return None
    v = (run.metrics or {}).get("test", {}).get(metric)
    return float(v) if isinstance(v, (int, float)) else None


def _shown(run: Run, metric: str) -> Cell:
    v = _value(run, metric)
    return cell(pct(v)) if v is not None else cell(run.status if run.status != "ok" else f"no {metric}", "warn")


def delta(ra: Run, rb: Run, metric: str | None) -> float | None:
    """B's test metric minus A's (None unless both have it)."""
    m = metric_for(ra, metric)
    va, vb = _value(ra, m), _value(rb, m)
    return None if va is None or vb is None else vb - va


def unchanged(ra: Run, rb: Run, metric: str | None) -> bool:
    d = delta(ra, rb, metric)
    return ra.status == rb.status and (d is None or same(d, 0.0))


REGRESSION_EXIT = 3  # compare --fail-on-drop: the exit status when the gate finds a regression


@dataclass(frozen=True)
class Regression:
    cell_id: str
    kind: str  # "drop" | "status" (ok in A, failed/diverged in B) | "missing" (only in A)
    text: str  # one line naming the cell, A, B and the drop
    counted: bool = True  # False: a cell missing in B under --allow-missing (reported, not a regression)


def regressions(cmp: Comparison, max_drop_pp: float, allow_missing: bool = False) -> list[Regression]:
    """The regression gate of ``compare --fail-on-drop PP``, over every cell in both A and B (same configuration
    or another: a change of settings that costs accuracy is what a gate is for): a test metric in B lower than
    in A by more than ``max_drop_pp`` percentage points, or a cell ok in A and failed or diverged (or without
    the metric) in B. Cells only in A are listed too, as regressions unless ``allow_missing``. A cell not ok in
    A is not compared (there is nothing to regress from)."""
    out = []
    for ra, rb in sorted(cmp.matched + cmp.changed, key=lambda p: p[0].cell_id):
        m = metric_for(ra, cmp.metric)
        va, vb = _value(ra, m), _value(rb, m)
        if va is None:
            continue
        other = "" if ra.same_configuration(rb) else " (another configuration)"
        name = METRIC_NAMES[m]
        if vb is None:
            b_text = rb.status if rb.status != "ok" else f"no {name}"
            out.append(Regression(ra.cell_id, "status",
                                  f"{ra.cell_id}{other}: {name} A {pct(va)}, B {b_text} (ok in A)"))
        elif (va - vb) * 100 > max_drop_pp and not same(va - vb, max_drop_pp / 100):
            out.append(Regression(ra.cell_id, "drop",
                                  f"{ra.cell_id}{other}: {name} A {pct(va)}, B {pct(vb)}, drop "
                                  f"{(va - vb) * 100:.2f} pp (more than {max_drop_pp:g})"))
    for r in cmp.only_a:
        m = metric_for(r, cmp.metric)
        va = _value(r, m)
        if va is None:
            continue  # not ok in A: nothing to regress from
        a_text = pct(va) if va is not None else r.status
        out.append(Regression(r.cell_id, "missing", f"{r.cell_id}: {METRIC_NAMES[m]} A {a_text}, B missing (only "
                                                    f"in A{'; allowed by --allow-missing' if allow_missing else ''})",
                              counted=not allow_missing))
    return out


def compared(cmp: Comparison) -> int:
    """How many cells of A the gate could compare (ok with the metric, in B or missing from it)."""
    return sum(_value(r, metric_for(r, cmp.metric)) is not None
               for r in [ra for ra, _ in cmp.matched + cmp.changed] + list(cmp.only_a))


def _pair_rows(pairs: list[tuple[Run, Run]], metric: str | None, hashes: bool) -> list[list[Cell]]:
    rows = []
    for ra, rb in pairs:
        m = metric_for(ra, metric)
        d = delta(ra, rb, metric)
        ta, tb = ra.costs.get("train_s"), rb.costs.get("train_s")
        rel = None if not ta or tb is None else (tb - ta) / ta
        row = [cell(ra.cell_id), *([cell(ra.config_hash), cell(rb.config_hash)] if hashes else []),
               cell(METRIC_NAMES[m]),
               _shown(ra, m), _shown(rb, m), cell(pp(d), None if d is None else delta_style(d)),
               cell(seconds(ta)), cell(seconds(tb)), cell(DASH if rel is None else f"{rel * 100:+.0f}%")]
        rows.append(row)
    return rows


def _only_row(run: Run, metric: str | None) -> list[Cell]:
    m = metric_for(run, metric)
    return [cell(run.cell_id), cell(run.config_hash), cell(run.status), cell(METRIC_NAMES[m]), _shown(run, m)]


def _by_strategy(cmp: Comparison, a_name: str, b_name: str) -> Table | None:
    groups = group_by(cmp.matched, lambda pair: pair[0].strategy)
    rows = []
    for s in sorted(groups, key=strategy_sort_key):
        deltas = [d for ra, rb in groups[s] if (d := delta(ra, rb, cmp.metric)) is not None]
        changed = sum(1 for ra, rb in groups[s] if not unchanged(ra, rb, cmp.metric))
        mean = sum(deltas) / len(deltas) if deltas else None
        ratios = [rb.costs["train_s"] / ra.costs["train_s"] for ra, rb in groups[s]
                  if ra.costs.get("train_s") and rb.costs.get("train_s") is not None]
        rel = sum(ratios) / len(ratios) - 1 if ratios else None
        label = next((rb.label or ra.label for ra, rb in groups[s] if rb.label or ra.label), s)
        rows.append([cell(label), cell(len(groups[s])), cell(changed),
                     cell(pp(mean), None if mean is None else delta_style(mean)),
                     cell(pp(min(deltas)) if deltas else DASH), cell(pp(max(deltas)) if deltas else DASH),
                     cell(DASH if rel is None else f"{rel * 100:+.0f}%")])
    if not rows:
        return None
    return Table("by-strategy", f"By strategy: B ({b_name}) against A ({a_name}), same cells and configurations",
                 [left("strategy", key=True), right("cells"), right("changed"), right("mean B − A (pp)"),
                  right("min (pp)"), right("max (pp)"), right("train s B vs A")], rows,
                 caption="test metric in percentage points; train s: mean ratio of the cells' training seconds",
                 notes=["changed: cells whose status or test metric differs."])


def comparison_tables(cmp: Comparison, a_name: str, b_name: str, show_all: bool = False) -> list[Table]:
    """The by-strategy summary, the matched cells (only those that changed unless ``show_all``; largest
    difference first), cells under another configuration, cells only in A, only in B."""
    values = [left("metric"), right(f"A ({a_name})"), right(f"B ({b_name})"), right("B − A (pp)"), right("A train s"),
              right("B train s"), right("train s B vs A")]
    unit = "test metric in %, B − A in percentage points; train s: training seconds of the cell"
    same_cells = [p for p in cmp.matched if show_all or not unchanged(*p, cmp.metric)]
    same_cells.sort(key=lambda p: (-abs(delta(*p, cmp.metric) or 0.0), p[0].cell_id))
    hidden = len(cmp.matched) - len(same_cells)
    summary = _by_strategy(cmp, a_name, b_name)
    tables = [summary] if summary is not None else []
    tables.append(Table("matched", f"Same cell, same configuration: {len(cmp.matched)}"
                        + (f", {len(same_cells)} changed" if not show_all else ""),
                        [CELL, *values], _pair_rows(same_cells, cmp.metric, False), caption=unit,
                        notes=["Matched by cell_id and config_hash (or an earlier identity version's hash); largest "
                               "|B − A| first. A diverged or failed cell shows its status instead of a value."]
                        + ([f"{hidden} cell(s) with the same status and metric in both are not listed (--all "
                            "lists them)."] if hidden else [])))
    if cmp.changed:
        tables.append(Table("changed", f"Same cell, another configuration: {len(cmp.changed)}",
                            [CELL, left("config A"), left("config B"), *values],
                            _pair_rows(cmp.changed, cmp.metric, True), caption=unit,
                            notes=["The configuration (config_hash: settings, weights, data, strategy parameters) "
                                   "differs: not a like-for-like comparison. The settings that differ, A → B, per "
                                   "cell (config, strategy.hparams, data identity, code version; never "
                                   "timestamps, hosts or timings):"]
                            + [f"{ra.cell_id}: {differences_text(ra, rb)}" for ra, rb in cmp.changed]))
    for key, runs, where in (("only-a", cmp.only_a, f"A ({a_name})"), ("only-b", cmp.only_b, f"B ({b_name})")):
        if runs:
            tables.append(Table(key, f"Only in {where}: {len(runs)}",
                                [CELL, left("config"), left("status"), left("metric"),
                                 right("value")],
                                [_only_row(r, cmp.metric) for r in runs]))
    return tables
