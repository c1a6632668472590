"""The tables of a group's results: by case, Δ against FT, ranks, the details next to their cost, and the
cells that diverged, failed or were flagged."""

from __future__ import annotations

from medft_bench.leaderboard.aggregate import Group, Row
from medft_bench.leaderboard.analysis import unconverged_probes
from medft_bench.leaderboard.stats import same
from medft_bench.leaderboard.tables.format import (
    CASE_KEYS,
    DASH,
    INCOMPLETE_MARK,
    MAJORITY_MARK,
    UNCONVERGED_MARK,
    count,
    delta_style,
    memory,
    metric_desc,
    pct,
    pp,
    seconds,
    title,
)
from medft_bench.leaderboard.tables.model import Table, cell, left, right
from medft_bench.vocabulary import METRIC_NAMES, METRICS


def results_table(group: Group) -> Table:
    strategies = group.strategies
    rows = []
    by_key = {(r.dataset, r.backbone, r.strategy): r for r in group.rows}
    spreads = group.analysis.scores
    for case in _all_cases(group):
        dataset, backbone = case
        present = [by_key.get((dataset, backbone, s)) for s in strategies]
        means = [r.summary_all.mean for r in present if r is not None and r.mean is not None]
        best = max(means) if means else None
        metric = next(r.metric for r in present if r is not None)
        cells = [cell(dataset), cell(backbone), cell(METRIC_NAMES[metric])]
        for r in present:
            if r is None:
                cells.append(cell(""))
            elif r.mean is None:
                cells.append(cell(_no_mean_reason(r), "warn"))
            else:
                sp = spreads.get((dataset, backbone, r.strategy))
                half = DASH if sp is None or sp.half is None else f"{sp.half * 100:.2f}"
                text = (f"{pct(r.summary_all.mean)} ± {half} ({len(r.by_seed_all)})"
                        + (f" {MAJORITY_MARK}" if r.majority or r.failed_seeds else "")
                        + (f" {INCOMPLETE_MARK}" if r.incomplete else ""))
                cells.append(cell(text, "best" if best is not None and same(r.summary_all.mean, best) else None))
        rows.append(cells)
    notes = [f"Mean over seeds ± half its 95% interval over the seeds and the test images ({DASH} for one seed), "
             "(n) = seeds, a failed seed at the chance score: the answer's spread (docs/leaderboard.md); best in "
             "case highlighted. The ok seeds' mean and sample std: the details table.",
             f"{MAJORITY_MARK} at least one seed is no better than the majority-class baseline, or failed (see "
             "flags).",
             f"{INCOMPLETE_MARK} the method did not complete as specified in at least one seed (see flags): kept "
             "out of the answer."]
    return _reflowed(group, Table("results", title(group, "Results by case"),
                                  [*CASE_KEYS, *(right(group.label(s)) for s in strategies)], rows,
                                  caption=metric_desc(group), notes=notes))


def _reflowed(group: Group, table: Table) -> Table:
    """Strategies as rows when the group has fewer cases than strategies (the real tier: 2 cases, 11 strategies),
    so that every result is in view on a 1280 px page and in an 80-column terminal; cases as rows otherwise."""
    return table.turned("strategy") if len(_all_cases(group)) < len(group.strategies) else table


def _no_mean_reason(r: Row) -> str:
    parts = []
    if r.diverged:
        parts.append(f"diverged {len(r.diverged)}")
    if r.failed:
        parts.append(f"failed {len(r.failed)}")
    if r.no_metric:
        parts.append(f"no {r.metric} {len(r.no_metric)}")
    return ", ".join(parts) or "no result"


def _all_cases(group: Group) -> list[tuple[str, str]]:
    return sorted({(r.dataset, r.backbone) for r in group.rows})


def delta_table(group: Group) -> Table | None:
    base = group.baseline
    if base is None:
        return None
    others = [s for s in group.strategies if s != base]
    if not others:
        return None
    cases = {cs.key: cs for cs in group.cases}
    rows = []
    for key in _all_cases(group):
        cs = cases.get(key)
        metric = next(r.metric for r in group.rows if (r.dataset, r.backbone) == key)
        cells = [cell(key[0]), cell(key[1]), cell(METRIC_NAMES[metric])]
        for s in others:
            if cs is None or not cs.deltas or s not in cs.deltas:
                cells.append(cell("" if cs is None or s not in cs.rows else "no FT", "muted"))
            else:
                d = cs.deltas[s]
                cells.append(cell(pp(d), delta_style(d)))
        rows.append(cells)
    return _reflowed(group, Table("delta", title(group, "Δ against FT by case (percentage points)"),
                                  [*CASE_KEYS, *(right(group.label(s)) for s in others)], rows,
                                  caption=metric_desc(group),
                                  notes=["Δ = strategy mean − FT mean over seeds, in percentage points of the "
                                         "case's metric."]))


def rank_table(group: Group) -> Table:
    strategies = group.strategies
    rows = []
    for cs in group.cases:
        cells = [cell(cs.dataset), cell(cs.backbone)]
        best = min(cs.ranks.values()) if cs.ranks else None
        for s in strategies:
            r = cs.ranks.get(s)
            cells.append(cell("" if r is None else f"{r:g}", "best" if r is not None and r == best else None))
        rows.append(cells)
    avg = [cell("average rank", "muted"), cell("")]
    best_avg = min((v[0] for v in group.avg_ranks.values()), default=None)
    for s in strategies:
        v = group.avg_ranks.get(s)
        avg.append(cell(DASH if v is None else f"{v[0]:.2f} ({v[1]})",
                     "best" if v is not None and same(v[0], best_avg) else None))
    rows.append(avg)
    return _reflowed(group, Table("ranks", title(group, "Ranks within each case (1 = best)"),
                                  [*CASE_KEYS[:2], *(right(group.label(s)) for s in strategies)], rows,
                                  caption=metric_desc(group),
                                  notes=["Higher metric = rank 1; ties share the average of their ranks; "
                                         "strategies without a mean in a case are not ranked there. The average "
                                         "rank: over cases (number of cases), as in Lee et al. (ICLR 2023)."]))


def details_table(group: Group, all_metrics: bool = False) -> Table:
    others = list(METRICS) if all_metrics else []
    columns = [left("dataset", key=True), left("backbone", key=True), left("strategy", key=True), right("n"),
               left("seeds"), right("mean"), right("std"), right("95% CI"), *(right(METRIC_NAMES[m]) for m in others),
               right("train s"), right("wall s"), right("peak MB"), right("trainable"), right("drift %"),
               right("div/fail"), left("flags")]
    rows = []
    for r in group.rows:
        s = r.summary
        ci = DASH if s.ci is None else f"[{pct(s.ci[0])}, {pct(s.ci[1])}]"
        flags = []
        if r.majority:
            flags.append(f"{MAJORITY_MARK} majority {len(r.majority)}/{len(r.ok)}")
        if r.incomplete:
            flags.append(f"{INCOMPLETE_MARK} incomplete {len(r.incomplete)}/{len(r.ok)}: {r.incomplete[0][1]}")
        if r.no_metric:
            flags.append(f"no {r.metric} {len(r.no_metric)}")
        if r.costs.get("kept_start"):
            flags.append(f"kept stage start {r.costs['kept_start']}/{len(r.ok)}")
        if r.costs.get("head_only"):
            flags.append(f"head-only epochs in {r.costs['head_only']}/{len(r.ok)}")
        if unconverged_probes(r):
            flags.append(f"{UNCONVERGED_MARK} probe not converged {unconverged_probes(r)}/{len(r.ok)}")
        if r.costs.get("chosen_lr"):
            flags.append("lr " + ", ".join(f"{lr:g}" for lr in r.costs["chosen_lr"]))
        cells = [cell(r.dataset), cell(r.backbone), cell(group.label(r.strategy)), cell(s.n),
                 cell(",".join(map(str, r.seeds)) or DASH), cell(pct(s.mean)),
                 cell(DASH if s.std is None else f"{s.std * 100:.2f}"), cell(ci)]
        for m in others:
            o = r.others[m]
            cells.append(cell(DASH if o.mean is None else f"{pct(o.mean)} ± "
                           f"{DASH if o.std is None else f'{o.std * 100:.2f}'}"))
        cells += [cell(seconds(r.costs["train_s"])), cell(seconds(r.costs["wall_s"])), cell(memory(r)),
                  cell(count(r.costs["trainable_params"])),
                  cell(DASH if r.costs.get("drift") is None else f"{r.costs['drift'] * 100:.2f}"),
                  cell(f"{len(r.diverged)}/{len(r.failed)}", "warn" if r.diverged or r.failed else None),
                  cell("; ".join(flags), "warn" if flags else None)]
        rows.append(cells)
    metric_note = metric_desc(group)
    tuned_note = (["Tuned protocol: train s is the whole learning-rate sweep (every trial), the cost of using the "
                   "strategy this way; lr: the learning rate chosen on validation (per seed)."]
                  if group.key.protocol == "tuned" else [])
    if others:
        metric_note += "; metric columns: test " + ", ".join(METRIC_NAMES[m] for m in others) + " (%, mean ± std)"
    return Table("details", title(group, "Details: accuracy next to cost"), columns, rows, caption=metric_note,
                 notes=["mean, std and CI in % of the metric; 95% CI = mean ± t(0.975, n−1)·s/√n, only for n >= 3.",
                        "train s / wall s: mean training and wall-clock seconds per seed; peak MB: largest over "
                        "seeds, GPU = peak allocated on the GPU, host = peak resident memory of the process (CPU "
                        "runs); trainable: trainable parameters; drift %: 100·‖θ−θ₀‖/‖θ₀‖ of the backbone (every "
                        "parameter before the head) at the end, mean over seeds; div/fail: diverged/failed seeds "
                        "(listed below, excluded from means); kept stage start: the stage's best checkpoint was "
                        "the state it started from (LP-FT: no fine-tuning epoch beat the probe).", *tuned_note])


def incidents_table(group: Group) -> Table | None:
    rows = []
    for r in group.rows:
        for run in [*r.diverged, *r.failed]:
            epoch = run.diverged_epoch
            rows.append([cell(run.cell_id), cell(run.status, "warn"), cell(DASH if epoch is None else epoch),
                         cell(_short(run.error or "")), cell(run.path, "muted")])
        for run in r.no_metric:
            rows.append([cell(run.cell_id), cell("ok", "muted"), cell(DASH), cell(f"test {r.metric} missing (null)"),
                         cell(run.path, "muted")])
        for run, why in r.majority:
            rows.append([cell(run.cell_id), cell("ok", "muted"), cell(DASH), cell(f"{MAJORITY_MARK} {why}"),
                         cell(run.path, "muted")])
    if not rows:
        return None
    return Table("incidents", title(group, "Diverged, failed and flagged cells"),
                 [left("cell", key=True), left("status"), right("diverged at epoch"), left("reason"),
                  left("record")], rows,
                 caption="Diverged and failed cells are excluded from means and ranks; flagged cells are kept.",
                 notes=["Majority-class flag: single-label: test ACC <= the majority class's ACC, or balanced "
                        "accuracy <= 1/classes; multi-label: test AUC <= 0.5 (balanced accuracy <= 0.5 when "
                        "AUC is missing), since ACC is ~0.95 for an all-negative ChestMNIST predictor."])


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
