"""The study's three claims (Davila, Colan & Hasegawa 2024), recomputed from this suite's own results, each
with a verdict that can say "not distinguishable from noise".

The unit of replication is the DATASET: a dataset's backbones share its effect, and seeds are replicates of
one (dataset, backbone) case, so no claim treats cases as independent draws. Each claim reduces the cases to
one number per dataset, tests over datasets (one-sided, in the direction the study claims), corrects for
searching (over modalities for claim 2; claim 3 needs every one of its comparisons, an intersection-union test
that needs no correction), and states n and the unit next to its verdict. A verdict begins with "consistent"
only when the claim is supported at level ALPHA; "not distinguishable from noise" when the estimate points the
study's way but the test does not reject; "not testable" when too few datasets make rejection impossible;
"not consistent" when the estimate points the other way.

Only the study's eight strategies take part, on the cases that all of them present in the group share. Each
claim is computed twice: with failed or diverged seeds counted as the majority-class (chance) score (the
verdict) and with them dropped (``verdict_without_failures``). Gains are in percentage points (pp) of the
metric; the study's "up to 11%" does not say whether pp or relative, so both are checked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medft_bench.leaderboard import stats
from medft_bench.leaderboard.groups import GroupData as Group
from medft_bench.leaderboard.names import find
from medft_bench.leaderboard.stats import ALPHA, MIN_DATASETS, same

SOURCE = "Davila, Colan & Hasegawa, Image and Vision Computing 146 (2024) 105012 (arXiv 2406.10050)"
NOT_ENOUGH = "not enough results"
NOISE = "not distinguishable from noise"
NOT_TESTABLE = "not testable"
STUDY_GAIN = 0.11  # claim 2: "up to 11%" (pp or relative: both checked)


@dataclass
class Claim:
    id: str
    statement: str
    study: str
    ours: str
    verdict: str  # begins with "consistent" only when supported; see the module's docstring
    details: dict[str, Any] = field(default_factory=dict)
    short: str = NOT_ENOUGH  # ours, in a few words
    verdict_without_failures: str = ""  # the same claim with failed and diverged seeds dropped
    unit: str = "datasets"
    n: int = 0  # datasets the verdict rests on

    @property
    def supported(self) -> bool:
        return self.verdict.startswith("consistent")


@dataclass(frozen=True)
class CaseView:
    dataset: str
    backbone: str
    modality: str
    means: dict[str, float]  # study strategy -> mean over seeds
    seeds: dict[str, list[float]] = field(default_factory=dict)  # study strategy -> its seeds' values


def within_case(cases: list[CaseView], a: str, b: str) -> dict[str, Any]:
    """Within-case evidence, seeds as replicates of ONE case: the cases where Welch's one-sided t-test says
    ``a``'s seeds are above ``b``'s at ALPHA. Never a verdict: it says nothing across datasets."""
    ps = [stats.welch_within_case(c.seeds.get(a, []), c.seeds.get(b, []), "greater") for c in cases]
    tested = [p for p in ps if p is not None]
    return {"cases_tested": len(tested), "cases_above": sum(p < ALPHA for p in tested),
            "text": f"within-case (seeds as replicates of one case, Welch one-sided p < {ALPHA}): above FT in "
                    f"{sum(p < ALPHA for p in tested)} of {len(tested)} cases"}


def delta_pp(delta: float) -> str:
    return f"{delta * 100:+.2f} pp"


def rel(delta: float, base: float) -> str:
    return f"{delta / base * 100:+.1f}% rel." if base else "n/a rel."


def _find(group: Group, name: str) -> str | None:
    return find(group.strategies, name)


def _is_densenet121(backbone: str) -> bool:
    return backbone.lower().replace("-", "").replace("_", "") == "densenet121"


def views(group: Group) -> dict[str, list[CaseView]]:
    """The study's cases, twice: ``counted`` (failed and diverged seeds as the chance score; a case counts when
    every study strategy present has a record there) and ``dropped`` (ok seeds only; a case counts when every
    study strategy has an ok mean there)."""
    study = group.study_strategies
    by_row = {(r.dataset, r.backbone, r.strategy): r for r in group.rows}

    def seeds(c: Any, all_: bool) -> dict[str, list[float]]:
        return {s: list(by_row[(c.dataset, c.backbone, s)].values_all if all_ else
                        by_row[(c.dataset, c.backbone, s)].values) for s in study}

    counted = [CaseView(c.dataset, c.backbone, c.modality or "unknown", {s: c.means_all[s] for s in study},
                        seeds(c, True))
               for c in group.cases if all(s in c.means_all for s in study)]
    dropped = [CaseView(c.dataset, c.backbone, c.modality or "unknown", {s: c.rows[s].mean for s in study},
                        seeds(c, False))
               for c in group.study_cases()]
    return {"counted": counted, "dropped": dropped}


def _n(n: int, unit: str = "dataset") -> str:
    return f"n = {n} {unit}{'s' if n != 1 else ''}"


# --- Claim 1 ---------------------------------------------------------------------------------------------------

def _lp_ft(cases: list[CaseView], lpft: str, ft: str) -> tuple[str, str, str, dict[str, Any]]:
    per_case = []
    for c in cases:
        a, b = c.means[lpft], c.means[ft]
        win = a > b and not same(a, b)
        per_case.append({"dataset": c.dataset, "backbone": c.backbone, "lp_ft": a, "ft": b, "delta": a - b,
                         "lp_ft_wins": win})
    wins = sum(p["lp_ft_wins"] for p in per_case)
    by_dataset = stats.group_by(per_case, lambda p: p["dataset"])
    share_by_dataset = {d: sum(p["lp_ft_wins"] for p in ps) / len(ps) for d, ps in sorted(by_dataset.items())}
    n = len(share_by_dataset)
    share = sum(share_by_dataset.values()) / n
    test = stats.sign_flip_test([v - 0.5 for v in share_by_dataset.values()], "greater")
    within = within_case(cases, lpft, ft)
    ours = (f"LP-FT beats FT in {wins} of {len(cases)} cases; share per dataset (mean over its backbones) "
            f"{share * 100:.0f}% over {_n(n)}; one-sided sign-flip p = {test['p']:.3g}; {within['text']}")
    where = f"({_n(n)}, sign-flip test over datasets)"
    if share <= 0.5 or same(share, 0.5):
        verdict = f"not consistent: LP-FT wins in {share * 100:.0f}% of cases per dataset, not more than half {where}"
    elif test["min_p"] >= ALPHA:
        verdict = (f"{NOT_TESTABLE}: {_n(n)} (the smallest p this test can give is {test['min_p']:.3g} >= {ALPHA}); "
                   f"share {share * 100:.0f}%")
    elif test["p"] < ALPHA:
        verdict = f"consistent: LP-FT wins in {share * 100:.0f}% of cases per dataset, p = {test['p']:.3g} {where}"
    else:
        verdict = f"{NOISE}: share {share * 100:.0f}% > 50% but p = {test['p']:.3g} {where}"
    details = {"cases": len(cases), "datasets": n, "wins": wins, "share_cases": wins / len(cases),
               "share_by_dataset": share_by_dataset, "share": share, "p": test["p"], "min_p": test["min_p"],
               "per_case": per_case, "within_case": within}
    return ours, verdict, f"{share * 100:.0f}% of cases per dataset, {_n(n)}, p = {test['p']:.3g}", details


# --- Claim 2 ---------------------------------------------------------------------------------------------------

def _auto_rgn(cases: list[CaseView], rgn: str, ft: str) -> tuple[str, str, str, dict[str, Any]]:
    by_mod = stats.group_by(cases, lambda c: c.modality)
    rows = []
    for mod in sorted(by_mod):
        gains = stats.dataset_means({(c.dataset, c.backbone): c.means[rgn] - c.means[ft] for c in by_mod[mod]})
        base = stats.dataset_means({(c.dataset, c.backbone): c.means[ft] for c in by_mod[mod]})
        test = stats.t_test(list(gains.values()), "greater")
        best_case = max(by_mod[mod], key=lambda c: (c.means[rgn] - c.means[ft], c.dataset, c.backbone))
        rows.append({"modality": mod, "datasets": len(gains), "cases": len(by_mod[mod]), "gain": test["mean"],
                     "ft": sum(base.values()) / len(base), "p": test["p"], "note": test["note"],
                     "per_dataset": gains, "largest_case": {"dataset": best_case.dataset,
                                                            "backbone": best_case.backbone,
                                                            "gain": best_case.means[rgn] - best_case.means[ft]}})
    tested = {r["modality"]: r["p"] for r in rows if r["p"] is not None}
    holm = stats.holm(tested)
    m = len(tested)
    for r in rows:
        r["p_holm"] = holm.get(r["modality"])
        r["relative"] = r["gain"] / r["ft"] if r["ft"] else None
        if r["p"] is not None:  # simultaneous (Bonferroni over the tested modalities) two-sided interval
            r["ci_simultaneous"] = stats.t_test(list(r["per_dataset"].values()), "greater",
                                                level=1 - ALPHA / m)["ci"]
    n = len({c.dataset for c in cases})
    per_mod = "; ".join(f"{r['modality']} {delta_pp(r['gain'])} ({_n(r['datasets'])}"
                        + (f", p_Holm = {r['p_holm']:.3g}" if r["p_holm"] is not None else ", not testable") + ")"
                        for r in rows)
    top = max(rows, key=lambda r: (r["gain"], r["modality"]))
    within = within_case(cases, rgn, ft)
    ours = (f"mean gain over datasets per modality: {per_mod}; {within['text']}; largest single case "
            f"{delta_pp(top['largest_case']['gain'])} ({top['largest_case']['dataset']}/"
            f"{top['largest_case']['backbone']}, descriptive: a maximum over cases)")
    where = f"(one-sided t over datasets per modality, Holm over {m} modalit{'y' if m == 1 else 'ies'} tested)"
    supported = [r for r in rows if r["p_holm"] is not None and r["p_holm"] < ALPHA]
    if supported:
        def matches(r: dict[str, Any]) -> bool:
            lo, hi = r["ci_simultaneous"]
            return any(lo <= g <= hi for g in (STUDY_GAIN, STUDY_GAIN * r["ft"]))
        names = ", ".join(f"{r['modality']} {delta_pp(r['gain'])} [CI {delta_pp(r['ci_simultaneous'][0])}, "
                          f"{delta_pp(r['ci_simultaneous'][1])}], p_Holm = {r['p_holm']:.3g}, {_n(r['datasets'])}"
                          for r in supported)
        if any(matches(r) for r in supported):
            verdict = f"consistent: Auto-RGN gains on {names}; 11% (pp or rel.) within the interval {where}"
        else:
            verdict = (f"partly consistent (direction only): Auto-RGN gains on {names}, but the study's 11% (pp or "
                       f"relative) is outside the simultaneous {100 * (1 - ALPHA):.0f}% interval {where}")
    elif not tested:
        verdict = (f"{NOT_TESTABLE}: no modality has >= {MIN_DATASETS} datasets ("
                   + ", ".join(f"{r['modality']}: {r['datasets']}" for r in rows) + ")")
    elif any(r["p_holm"] is not None and r["gain"] > 0 and not same(r["gain"], 0.0) for r in rows):
        best = min((r for r in rows if r["p_holm"] is not None and r["gain"] > 0 and not same(r["gain"], 0.0)),
                   key=lambda r: (r["p_holm"], -r["gain"], r["modality"]))
        verdict = (f"{NOISE}: largest mean gain {delta_pp(best['gain'])} on {best['modality']}, p_Holm = "
                   f"{best['p_holm']:.3g} ({_n(best['datasets'])}) {where}")
    else:
        verdict = f"not consistent: Auto-RGN's mean gain over datasets is above 0 on no tested modality {where}"
    details = {"unit": "fraction of the metric (x100 = percentage points); one value per dataset",
               "modalities": rows, "cases": len(cases), "datasets": n, "modalities_tested": m, "within_case": within}
    short = f"{delta_pp(top['gain'])} mean on {top['modality']} ({_n(top['datasets'])})"
    return ours, verdict, short, details


# --- Claim 3 ---------------------------------------------------------------------------------------------------

def _densenet(cases: list[CaseView], alternatives: list[str], ft: str,
              label: Any) -> tuple[str, str, str, dict[str, Any]]:
    """The alternatives' gain on (dataset, backbone): the mean over the study's seven alternatives of their
    Δ against FT (no selection of the best alternative on the numbers being tested)."""
    gain = {(c.dataset, c.backbone): sum(c.means[s] - c.means[ft] for s in alternatives) / len(alternatives)
            for c in cases}
    backbones = sorted({b for _, b in gain})
    per_backbone = []
    for bb in backbones:
        g = {d: v for (d, b), v in gain.items() if b == bb}
        best = max(alternatives, key=lambda s: (sum(c.means[s] - c.means[ft] for c in cases if c.backbone == bb), s))
        per_backbone.append({"backbone": bb, "gain": sum(g.values()) / len(g), "datasets": len(g),
                             "best_alternative_descriptive": best})
    ours = "; ".join(f"{r['backbone']}: {delta_pp(r['gain'])} (mean of the {len(alternatives)} alternatives, "
                     f"{_n(r['datasets'])}; best: {label(r['best_alternative_descriptive'])})" for r in per_backbone)
    dense = next((b for b in backbones if _is_densenet121(b)), None)
    details: dict[str, Any] = {"unit": "fraction of the metric; one value per dataset", "backbones": per_backbone,
                               "alternatives": alternatives}
    if len(backbones) < 2:
        return ours, f"{NOT_ENOUGH}: only one backbone ({backbones[0]})", ours, details
    if dense is None:
        return ours, f"{NOT_ENOUGH}: no DenseNet-121 results", ours, details
    d_gain = {d: v for (d, b), v in gain.items() if b == dense}
    components = [{"against": "0", **stats.t_test(list(d_gain.values()), "greater")}]
    for bb in backbones:
        if bb == dense:
            continue
        diffs = [d_gain[d] - gain[(d, bb)] for d in sorted(d_gain) if (d, bb) in gain]
        components.append({"against": bb, **stats.t_test(diffs, "greater")})
    for comp in components:
        comp.pop("ci", None)
    details["tests"] = components
    n = min(c["n"] for c in components)
    details["datasets"] = n
    leaders = max(per_backbone, key=lambda r: r["gain"])
    dense_row = next(r for r in per_backbone if r["backbone"] == dense)
    where = (f"({_n(n)}; one-sided t over datasets: DenseNet-121's gain > 0 and > each other backbone's, "
             "all required)")
    worst = max(components, key=lambda c: (c["p"] is None, c["p"] or 0.0))
    if dense_row["gain"] <= 0 or any(c["mean"] is not None and c["mean"] <= 0 for c in components):
        verdict = (f"not consistent: DenseNet-121's gain {delta_pp(dense_row['gain'])} is not above both 0 and "
                   f"every other backbone's (largest: {leaders['backbone']} {delta_pp(leaders['gain'])}) {where}")
    elif any(c["p"] is None for c in components):
        verdict = f"{NOT_TESTABLE}: {worst['note']} {where}"
    elif all(c["p"] < ALPHA for c in components):
        verdict = f"consistent: DenseNet-121 gains {delta_pp(dense_row['gain'])}, largest p = {worst['p']:.3g} {where}"
    else:
        verdict = (f"{NOISE}: DenseNet-121's gain {delta_pp(dense_row['gain'])} is the largest, but p = "
                   f"{worst['p']:.3g} against {worst['against']} {where}")
    return ours, verdict, f"DenseNet-121 {delta_pp(dense_row['gain'])}, {_n(n)}", details


# --- Both ways -------------------------------------------------------------------------------------------------

def _claim(cid: str, statement: str, study: str, compute: Any, v: dict[str, list[CaseView]],
           missing: str | None) -> Claim:
    if missing:
        return Claim(cid, statement, study, f"{NOT_ENOUGH}: {missing}", f"{NOT_ENOUGH}: {missing}",
                     {"cases": 0}, NOT_ENOUGH, f"{NOT_ENOUGH}: {missing}", n=0)
    out = {}
    for key in ("counted", "dropped"):
        out[key] = compute(v[key]) if v[key] else None
    if out["counted"] is None:
        why = f"{NOT_ENOUGH}: no case has every study strategy"
        return Claim(cid, statement, study, why, why, {"cases": 0}, NOT_ENOUGH, why, n=0)
    ours, verdict, short, details = out["counted"]
    without = out["dropped"][1] if out["dropped"] else f"{NOT_ENOUGH}: no case where every study strategy is ok"
    details = {**details, "failures": "counted as the chance score", "without_failures": (
        out["dropped"][3] if out["dropped"] else None)}
    n = details.get("datasets", 0) if isinstance(details.get("datasets"), int) else 0
    return Claim(cid, statement, study, ours, verdict, details, short, without, "datasets", n)


def kept_starts(group: Group, lpft: str | None) -> tuple[int, int]:
    """(LP-FT seeds that kept their probe: no stage-2 epoch beat it on validation, so LP-FT's test result is
    LP's; LP-FT's ok seeds)."""
    runs = [r for c in group.cases for s, row in c.rows.items() if s == lpft for r in row.ok]
    return sum(r.best_epoch == -1 for r in runs), len(runs)


def norm_mode_control(group: Group, name: str, ft: str | None) -> dict[str, Any]:
    """Which bundle a claim against FT compares: ``name`` (LP-FT, Auto-RGN) trains with BatchNorm statistics
    frozen, FT with them updating; FT (eval BN) (``ft_eval``) is FT in ``name``'s norm mode. Where the group has
    it, the mean difference of ``name`` against each FT over the cases that have all three, in pp."""
    control = _find(group, "ft_eval")
    label = group.label(name)
    text = (f"bundle: {label} trains with BatchNorm statistics frozen (eval mode), FT with them updating (train "
            "mode), so its difference from FT is method and norm mode together")
    out: dict[str, Any] = {"strategy": name, "control": control, "cases": 0}
    cases = [c for c in group.cases if all(s in c.rows for s in (name, control, ft) if s)] if control and ft else []
    if not cases:
        return {**out, "text": text + " (no FT (eval BN) control in this group: run strategy ft_eval)"}
    vs_ft = sum(c.rows[name].mean - c.rows[ft].mean for c in cases) / len(cases)
    vs_control = sum(c.rows[name].mean - c.rows[control].mean for c in cases) / len(cases)
    return {**out, "cases": len(cases), "delta_vs_ft": vs_ft, "delta_vs_control": vs_control,
            "text": f"{text}; against the FT (eval BN) control, the norm mode held equal: {delta_pp(vs_control)} "
                    f"(against FT {delta_pp(vs_ft)}; mean over {len(cases)} case{'s' if len(cases) != 1 else ''})"}


def compute_claims(group: Group) -> list[Claim]:
    v = views(group)
    ft, lpft, rgn = _find(group, "ft"), _find(group, "lp_ft"), _find(group, "auto_rgn")
    alternatives = [s for s in group.study_strategies if s != ft]
    claims = [
        _claim("lp_ft_beats_ft", "LP-FT beats FT in more than half of the cases", "> 50% of cases",
               lambda cs: _lp_ft(cs, lpft, ft), v, None if lpft and ft else "no case has both LP-FT and FT"),
        _claim("auto_rgn_gain_by_modality", "Auto-RGN improves on FT by up to 11% for specific modalities",
               "up to 11% (unit not stated: pp or relative)", lambda cs: _auto_rgn(cs, rgn, ft), v,
               None if rgn and ft else "no case has both Auto-RGN and FT"),
        _claim("best_alternative_by_backbone", "DenseNet-121 benefits most from the alternatives to FT",
               "DenseNet-121 gains most", lambda cs: _densenet(cs, alternatives, ft, group.label), v,
               None if ft and alternatives else "no backbone has FT and another strategy in the same case"),
    ]
    for claim, name in ((claims[0], lpft), (claims[1], rgn)):
        if name:
            bundle = norm_mode_control(group, name, ft)
            claim.ours += f"; {bundle['text']}"
            claim.details["norm_mode_control"] = bundle
    kept, seeds = kept_starts(group, lpft)
    if seeds:  # LP-FT is never below LP on validation by construction: how often that rule decided the result
        claims[0].ours += (f"; LP-FT kept its probe (no fine-tuning epoch beat it on validation: its result is "
                           f"LP's) in {kept} of {seeds} seeds")
        claims[0].details["kept_starts"] = {"kept": kept, "seeds": seeds}
    return claims


METHOD = [
    "Unit: the DATASET (a dataset's backbones share its effect; seeds are replicates of one case). Each claim "
    "reduces its cases to one number per dataset and tests over datasets, one-sided in the study's direction, "
    f"at {ALPHA}; a verdict begins with 'consistent' only when that test rejects; '{NOISE}': the estimate points "
    f"the study's way but the test does not reject; '{NOT_TESTABLE}': too few datasets for any rejection.",
    "1: per dataset, the share of its backbones where LP-FT's mean is above FT's (ties are not wins); the mean "
    "share over datasets must exceed 50%: one-sided sign-flip permutation test of (share − 1/2) over datasets "
    "(exact; with n datasets the smallest p is 1/2^n, so n <= 4 is not testable).",
    "2: per modality, Auto-RGN − FT per dataset (mean over its backbones), one-sided t over the modality's "
    f"datasets (>= {MIN_DATASETS}), Holm over the modalities tested (searching for the best modality is "
    "corrected for); 'consistent' also needs the study's 11% (in pp, or relative to FT) inside the simultaneous "
    "(Bonferroni) interval of a supported modality's gain; 'partly consistent (direction only)' otherwise. The "
    "largest single case is shown, as a description only.",
    "3: the alternatives' gain on a case = the mean Δ against FT of the study's seven alternatives (no best-of-"
    "seven selection); DenseNet-121's gain per dataset must be above 0 and above each other backbone's "
    "(one-sided paired t over datasets, every test at "
    f"{ALPHA}: an intersection-union test, no correction needed); needs two backbones or more.",
    "Failures: a failed or diverged seed counts as the majority-class (chance) score (balanced accuracy "
    "1/classes, AUC 0.5); the verdict counts them, the column 'without failures' drops them (and cases where a "
    "study strategy has no ok seed).",
]


