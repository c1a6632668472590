"""The answer table: which strategy for each modality and backbone, at what cost (see :mod:`recommend`)."""

from __future__ import annotations

from medft_bench.leaderboard import bootstrap
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.recommend import MARGIN, Candidate, Recommendation
from medft_bench.leaderboard.recommend import MIN_SEEDS as MIN_SEEDS_REC
from medft_bench.leaderboard.stats import ALPHA
from medft_bench.leaderboard.tables.format import DASH, count, metric_desc, pct, pp, title
from medft_bench.leaderboard.tables.model import Cell, Table, cell, left, right


def recommendation_table(group: Group) -> Table | None:
    """Which strategy for each modality and backbone of the group, at what cost (see :mod:`recommend`): per
    case three lines, the best (selected on validation), the runner-up with the test of their difference, and the
    cheapest strategy non-inferior to the best, each with its test score and its cost (training time, peak memory,
    trainable parameters). Narrow on purpose, the case stacked in its column (modality, backbone, then one dataset a
    line), so that the answer fits a 100-column terminal."""
    rows = []
    recs = group.analysis.recommendations
    kinds: set[str] = set()
    notes_images: set[str] = set()
    for rec in recs:
        lines: list[tuple[str, Candidate | None, Cell]] = [("best", rec.best, cell(""))]
        if rec.runner_up is not None:
            diff = rec.runner_up.summary.mean - rec.best.summary.mean
            verdict = "no test" if rec.p is None else f"p={rec.p:.2g}" + ("*" if rec.significant else "")
            lines.append(("runner-up", rec.runner_up, cell(f"{pp(diff)} {verdict}",
                                                           "neg" if rec.significant else "muted")))
        if rec.cheapest is None:
            lines.append(("cheapest", None, cell("not testable", "muted")))
        elif rec.cheapest is rec.best:
            lines.append(("cheapest", rec.best, cell("= best", "muted")))
        else:
            lines.append(("cheapest", rec.cheapest,
                          cell(pp(rec.cheapest.summary.mean - rec.best.summary.mean), "muted")))
        case = [rec.modality, rec.backbone, *rec.datasets]
        notes_images.add(rec.images.note if rec.images and rec.images.note else "")
        # Each line: (role, candidate, its test % cell, its vs-best cell); under it, the test set's interval for
        # the number it qualifies (the best's score, the others' difference), so that no column is added.
        shown: list[tuple[str, Candidate | None, Cell, Cell]] = []
        for (role, cand, versus), ci in zip(lines, _image_cells(rec, [role for role, _, _ in lines])):
            shown.append((role, cand, cell(_score(cand)), versus))
            if ci is not None:
                shown.append(("", None, ci, cell("")) if role == "best" else ("", None, cell(""), ci))
        shown += [("", None, cell(""), cell(""))] * (len(case) - len(shown))
        for i, (role, cand, score, versus) in enumerate(shown):
            cost, kind = _candidate_cost(cand)
            kinds |= {kind} if kind else set()
            rows.append([cell(case[i] if i < len(case) else ""), cell(role),
                         cell(group.label(cand.strategy) if cand else ("" if not role else DASH)), score,
                         versus, cell(cost)])
    if not rows:
        return None
    selected = sorted({rec.selected_on for rec in recs})
    memory = " and ".join(sorted({"gpu": "GPU allocated", "host": "host resident (CPU runs)"}[k] for k in kinds))
    return Table("recommendations", title(group, "Which strategy for my modality and backbone?"),
                 # answer and strategy repeat with the case: a part with the cost alone still says whose it is
                 [left("case", key=True), left("answer", key=True), left("strategy", key=True), right("test %"),
                  left("vs best"), right("cost")], rows, caption=metric_desc(group),
                 notes=["case: modality, backbone, datasets. Per modality and backbone, the strategies with a "
                        "result on every dataset of the modality compete; score per seed = mean over those datasets; "
                        "test %: the TEST score, mean ± half the 95% t interval over seeds (no ± below 3 seeds).",
                        "best and runner-up: ranked by the VALIDATION score (selected on: " + ", ".join(selected)
                        + "), so that the test comparisons do not test the numbers that chose the winner.",
                        "vs best: the test difference from the best in pp; for the runner-up with the two-sided "
                        f"paired t-test over seeds (>= {MIN_SEEDS_REC} seeds; * p < {ALPHA}). The unit is the seed: "
                        "these datasets, not other datasets of the modality; the test set's sampling error is the "
                        "[lo, hi] below.",
                        f"[lo, hi] under a number: its 95% interval over the TEST IMAGES, the test set's sampling "
                        f"error with the trained models held fixed (percentile bootstrap, {bootstrap.B} draws shared "
                        "by every strategy and seed): under the best's test %, its score; under a vs-best difference, "
                        "that difference (paired image by image). Where it and the seed test disagree, neither "
                        "settles the ranking."
                        + "".join(f" No interval: {n}." for n in sorted(notes_images - {""})),
                        f"cheapest: the least training time per seed among the strategies non-inferior to the best "
                        f"by {MARGIN * 100:g} pp (one-sided 95% lower bound of the paired difference over seeds above "
                        f"−{MARGIN * 100:g} pp; the best itself qualifies; not testable below {MIN_SEEDS_REC} seeds).",
                        "cost: train s · peak memory · trainable parameters. train s: mean training seconds per seed "
                        "(tuned protocol: the whole learning-rate sweep); peak memory: the largest over the case's "
                        f"cells ({memory or 'none recorded'})."])


def _image_cells(rec: Recommendation, roles: list[str]) -> list[Cell | None]:
    """The bootstrap-over-images interval for each line of a recommendation (by role: best, runner-up, cheapest),
    None where there is none (no predictions, the cheapest being the best)."""
    ci = rec.images
    out: list[Cell | None] = []
    for role in roles:
        diff = None if ci is None or ci.note else ci.best if role == "best" else (
            ci.runner_up if role == "runner-up" else ci.cheapest)
        if diff is None:
            out.append(None)
        elif role == "best":
            out.append(cell(f"[{diff[0] * 100:.1f}, {diff[1] * 100:.1f}]", "muted"))
        else:
            lo, hi = diff
            out.append(cell(f"[{lo * 100:+.1f}, {hi * 100:+.1f}]", "muted" if lo <= 0 <= hi else "neg"))
    return out


def _score(cand: Candidate | None) -> str:
    if cand is None:
        return ""
    s = cand.summary
    return pct(s.mean) + (f" ± {s.ci_half * 100:.2f}" if s.ci_half is not None else "")


def _candidate_cost(cand: Candidate | None) -> tuple[str, str | None]:
    """"train s · peak memory · trainable parameters" of a candidate, and the memory's kind."""
    if cand is None:
        return "", None
    value = cand.peak_mem_mb
    mem = DASH if value is None else f"{value / 1024:.2f}GB" if value >= 1024 else f"{value:.0f}MB"
    train = DASH if cand.train_s is None else f"{cand.train_s:.1f}s"
    return f"{train}·{mem}·{count(cand.trainable_params)}", cand.peak_mem_kind


def recommendation_tables(groups: list[Group]) -> list[Table]:
    return [t for t in map(recommendation_table, groups) if t is not None]
