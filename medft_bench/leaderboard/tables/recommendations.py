"""The answer table: which strategy for each modality and backbone, at what cost (see :mod:`recommend`)."""

from __future__ import annotations

from medft_bench.leaderboard import bootstrap
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.recommend import MARGIN, Recommendation, Standing
from medft_bench.leaderboard.stats import ALPHA
from medft_bench.leaderboard.tables.format import DASH, INCOMPLETE_MARK, count, metric_desc, title
from medft_bench.leaderboard.tables.model import Cell, Table, cell, left, right
from medft_bench.vocabulary import METRIC_NAMES


def recommendation_table(group: Group) -> Table | None:
    """Which strategy for each modality and backbone of the group, at what cost (see :mod:`recommend`): per case
    every competing strategy, the best (selected on validation) first, then the rest of the set the data cannot
    separate from it, then those shown below it; each with its test score and interval, its difference from the
    best, how often validation picks it, balanced accuracy beside, and its cost; last, the cheapest of the set and
    whether its non-inferiority is shown. The case is stacked in its column (modality, backbone, then one dataset
    a line) so that the answer fits a 100-column terminal."""
    rows = []
    recs = group.analysis.recommendations
    kinds: set[str] = set()
    noises: set[str] = set()
    left_out: dict[str, str] = {}
    for rec in recs:
        left_out |= {group.label(s): why for s, why in rec.left_out.items()}
        case = [rec.modality, rec.backbone, *rec.datasets]
        noises.add(rec.noise)
        lines: list[list[Cell]] = []
        for st in rec.standings:
            cost, kind = _candidate_cost(st)
            kinds |= {kind} if kind else set()
            lines.append([cell(_role(rec, st), "muted" if st.versus is not None and st.versus.below else None),
                          cell(group.label(st.strategy)), cell(_score(st)), cell(_versus(st)),
                          cell(DASH if st.picked is None else f"{st.picked * 100:.0f}%"),
                          cell(DASH if st.beside is None else f"{st.beside * 100:.1f}"), cell(cost)])
        lines.append([cell("cheapest"), cell(group.label((rec.cheapest or rec.best).strategy)),
                      cell(""), cell(_cheapest_verdict(rec), "muted"), cell(""), cell(""), cell("")])
        lines += [[cell("")] * 7] * (len(case) - len(lines))
        rows += [[cell(case[i] if i < len(case) else ""), *line] for i, line in enumerate(lines)]
    if not rows:
        return None
    selected = sorted({rec.selected_on for rec in recs})
    memory = " and ".join(sorted({"gpu": "GPU allocated", "host": "host resident (CPU runs)"}[k] for k in kinds))
    metric = " / ".join(sorted({METRIC_NAMES.get(r.metric, r.metric) for r in recs}))
    return Table("recommendations", title(group, "Which strategy for my modality and backbone?"),
                 # answer and strategy repeat with the case: a part with the cost alone still says whose it is
                 [left("case", key=True), left("answer", key=True), left("strategy", key=True), right("test %"),
                  left("vs best [95%]"), right("picked"), right("bal.acc"), right("cost")], rows,
                 caption=metric_desc(group),
                 notes=["case: modality, backbone, datasets. Per modality and backbone, the strategies with a result "
                        "on every dataset of the modality compete; score per seed = mean over those datasets; a seed "
                        "that failed (not ok, or no better than the majority class on the metric) scores the chance "
                        "score, and † n after a score counts such seeds.",
                        f"test %: test {metric}, mean over seeds ± half its 95% interval; the interval carries "
                        "the training noise (seeds, Welch) and the test images' sampling error (bootstrap over "
                        f"images, {bootstrap.B} draws shared by every strategy), Welch-Satterthwaite degrees of "
                        "freedom. This table's intervals carry: " + "; ".join(sorted(noises)) + ".",
                        "best: the highest VALIDATION mean (selected on: " + ", ".join(selected) + "); picked: the "
                        "share of resamples (seeds within each strategy, validation images) in which the strategy "
                        "is that pick: the selection's own uncertainty.",
                        "vs best: test difference from the best in pp with its SIMULTANEOUS 95% interval "
                        "(Games-Howell over the case's strategies: the same two noise sources, images paired, seeds "
                        "not; it holds for every pair at once, so the pick on validation cannot bias it). below: "
                        f"that interval is below 0 (p < {ALPHA}; each p in the JSON summary). in set: not separable "
                        "from the best. above: shown above the best on test (the validation pick is contradicted); "
                        "kept in the set. The answer is the best and the strategies in its set.",
                        "bal.acc: test balanced accuracy at the argmax, %, beside the ranking metric (it moves with "
                        "where the decision threshold falls; the study's claims use it).",
                        f"cheapest: the least training time per seed in the set; 'non-inferior' only when the "
                        f"one-sided 95% lower bound of (cheapest − best), shown as (≥ bound) in pp, is above "
                        f"−{MARGIN * 100:g} pp; otherwise the data cannot tell.",
                        *_edge_notes(group),
                        *([f"{INCOMPLETE_MARK} left out of the answer: " + "; ".join(
                            f"{s} ({why})" for s, why in sorted(left_out.items()))] if left_out else []),
                        "cost: train s · trainable parameters. train s: mean training seconds per seed (tuned "
                        "protocol: the whole learning-rate sweep); peak memory "
                        f"({memory or 'none recorded'}): the results tables."])


def _edge_notes(group: Group) -> list[str]:
    """One note naming each answer's strategy whose tuned rate sat at its grid's edge in most seeds (the grid may
    have stopped short of its best rate, so it may be under-tuned there)."""
    parts = []
    for rec in group.analysis.recommendations:
        names = {st.strategy for st in rec.standings}
        for row in sorted((r for r in group.rows if r.dataset in rec.datasets and r.backbone == rec.backbone
                           and r.strategy in names), key=lambda r: (r.dataset, rec.not_separable.index(r.strategy)
                                                                    if r.strategy in rec.not_separable else 99)):
            e = row.grid_edges
            for edge in ("lowest", "highest"):
                if e.get(edge, 0) * 2 > e.get("of", 0):
                    parts.append(f"{row.dataset} {group.label(row.strategy)} {e[edge]}/{e['of']} at the {edge}")
    if not parts:
        return []
    return ["grid edge: the tuned rate (tuning.chosen_lr) was the grid's lowest or highest in most seeds, so the "
            "best rate may lie outside the grid and the strategy may be under-tuned: " + "; ".join(parts) + "."]


def _role(rec: Recommendation, st: Standing) -> str:
    if st is rec.best:
        return "best"
    if st.versus is None or st.versus.p is None or st.versus.p >= ALPHA:
        return "in set"
    return "below" if st.versus.below else "above"  # above: test contradicts the pick on validation


def _versus(st: Standing) -> str:
    if st.versus is None:
        return ""
    d = st.versus.diff
    interval = "" if d.interval is None else f" [{d.interval[0] * 100:+.1f}, {d.interval[1] * 100:+.1f}]"
    return f"{d.value * 100:+.1f}" + interval


def _cheapest_verdict(rec: Recommendation) -> str:
    if rec.cheapest is None:
        return "the best"
    if rec.cheapest_shown is None:
        return "cannot tell"
    return ("non-inferior" if rec.cheapest_shown else "cannot tell") + f" (≥ {rec.cheapest_lower * 100:+.1f})"


def _score(st: Standing) -> str:
    s = st.score
    return (f"{s.value * 100:.1f}" + (f" ± {s.half * 100:.1f}" if s.half is not None else "")
            + (f" †{st.failed}" if st.failed else ""))


def _candidate_cost(cand: Standing | None) -> tuple[str, str | None]:
    """"train s · trainable parameters" of a candidate (peak memory: the results tables), and its memory's kind."""
    if cand is None:
        return "", None
    train = DASH if cand.train_s is None else f"{cand.train_s:.1f}s"
    return f"{train}·{count(cand.trainable_params)}", cand.peak_mem_kind


def recommendation_tables(groups: list[Group]) -> list[Table]:
    return [t for t in map(recommendation_table, groups) if t is not None]
