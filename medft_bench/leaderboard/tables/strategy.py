"""The strategies against FT: within one group (tests over datasets, wins/ties/losses), and across the two
protocols of one setting (does an advantage survive tuning?)."""

from __future__ import annotations

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.stats import ALPHA, MIN_DATASETS, same
from medft_bench.leaderboard.survival import survival
from medft_bench.leaderboard.tables.format import DASH, delta_style, metric_desc, pp, title
from medft_bench.leaderboard.tables.model import Table, cell, left, right


def strategy_table(group: Group) -> Table:
    base = group.baseline
    order = sorted(group.strategies, key=lambda s: (group.avg_ranks.get(s, (float("inf"), 0))[0],
                                                     group.strategies.index(s)))
    common = group.common_strategies
    rows = []
    for s in order:
        ar = group.avg_ranks.get(s)
        rc = group.avg_ranks_common.get(s)
        cells = [cell(group.label(s)), cell(DASH if ar is None else f"{ar[0]:.2f}"), cell(0 if ar is None else ar[1]),
                 cell(DASH if rc is None else f"{rc:.2f}")]
        if base is None or s == base:
            cells += [*(cell(DASH) for _ in range(7)), cell("baseline" if s == base else "no FT")]
        else:
            v = group.analysis.versus_ft[s]
            t = group.tests.get(s, {})
            ok = t.get("ok_only", {})
            p = t.get("p")
            ci = t.get("ci")
            mean_d = t.get("mean")
            cells += [cell(f"{v.wins}/{v.ties}/{v.losses}"),
                      cell(t.get("n", 0)),
                      cell(DASH if mean_d is None else pp(mean_d) + ("" if ci is None else
                                                                    f" [{pp(ci[0])}, {pp(ci[1])}]"),
                           delta_style(mean_d) if mean_d is not None else None),
                      cell(DASH if p is None else f"{p:.4f}"),
                      cell(DASH if t.get("p_holm") is None else f"{t['p_holm']:.4f}",
                           "pos" if t.get("p_holm") is not None and t["p_holm"] < ALPHA else None),
                      cell(DASH if ok.get("p_holm") is None else f"{ok['p_holm']:.4f}"),
                      cell(f"{v.within_case_above}+ / {v.within_case_below}− of {v.within_case_tested}"),
                      cell(t.get("note") or f"t = {t['t']:.2f}, {t['n']} datasets", "muted" if t.get("note") else None)]
        rows.append(cells)
    common_note = (f"avg rank (common): ranks within each case among the {len(common)} strategies present in every "
                   "case, averaged over all cases (one competitor set); avg rank: over each strategy's own cases."
                   if common else "avg rank (common): no strategy is present in every case.")
    return Table("strategies", title(group, "Strategies against FT"),
                 [left("strategy", key=True), right("avg rank"), right("cases"), right("avg rank (common)"),
                  right("wins/ties/losses (cases)"), right("datasets n"),
                  right("mean Δ vs FT over datasets (pp) [95% CI]"),
                  right("t-test p"), right("p (Holm)"), right("p (Holm), failures dropped"),
                  right(f"within-case seeds p < {ALPHA}"), left("test")],
                 rows, caption=metric_desc(group),
                 notes=["Test against FT at the independent unit, the DATASET (a dataset's backbones share its "
                        "effect, so cases are not independent): per dataset the mean over its backbones of the case "
                        "Δ (means over seeds, a failed or diverged seed counted as the majority-class score), then a "
                        f"two-sided one-sample t-test over datasets (n = datasets, every one tested, zero differences "
                        f"included; fewer than {MIN_DATASETS} datasets: not testable). p (Holm) adjusts for the "
                        "strategies tested here; 'failures dropped': the same test on ok seeds only.",
                        "within-case seeds: cases where Welch's t over seeds (seeds as replicates of ONE case) gives "
                        f"p < {ALPHA}, above (+) or below (−) FT: evidence about those cases, not across datasets.",
                        common_note])


def survival_table(study: Group, tuned: Group) -> Table | None:
    """Does a strategy's advantage over FT survive tuning? Its mean Δ against FT under each protocol, on the
    cases both protocols share; a change of sign is highlighted."""
    rows = []
    for sv in survival(study, tuned):
        verdict = ("sign flip" if sv.flip else "same sign" if not (same(sv.study, 0) or same(sv.tuned, 0))
                   else "a zero Δ")
        rows.append([cell(tuned.label(sv.strategy)), cell(pp(sv.study), delta_style(sv.study)),
                     cell(pp(sv.tuned), delta_style(sv.tuned)), cell(pp(sv.tuned - sv.study)), cell(len(sv.cases)),
                     cell(verdict, "warn" if sv.flip else None)])
    if not rows:
        return None
    return Table("survival", f"Does it survive tuning? — {study.key.setting_label}",
                 [left("strategy", key=True), right("mean Δ vs FT, study (pp)"), right("mean Δ vs FT, tuned (pp)"),
                  right("change (pp)"), right("cases"), left("verdict")], rows, caption=metric_desc(study),
                 notes=["Δ = strategy mean − FT mean over seeds, per (dataset, backbone) case, within each protocol "
                        "(FT tuned too under the tuned one), averaged over the cases that have the strategy and FT "
                        "under both protocols; cases: how many.",
                        "sign flip: the strategy's advantage over FT (or its deficit) reverses once every strategy "
                        "runs at its own best learning rate on validation."])
