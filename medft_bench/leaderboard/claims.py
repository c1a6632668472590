"""The study's three claims (Davila, Colan & Hasegawa 2024), recomputed from this suite's own results.

All comparisons are made within one group (tier, data, weights, image size) and within a case (dataset,
backbone), on the case's metric, between means over seeds. As in the study, only the study's eight
strategies take part, on the cases that all of them present in the group share (``Group.study_cases``),
and every claim states how many cases (n) it rests on. Gains are in **percentage points** (pp) of the
metric: FT 80.0% -> 88.8% is +8.8 pp; the relative gain (+11.0% of FT's value) is shown alongside. The
study's "up to 11%" does not say which of the two it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from medft_bench.leaderboard.names import canonical_name
from medft_bench.leaderboard.stats import same

if TYPE_CHECKING:
    from medft_bench.leaderboard.aggregate import Group

SOURCE = "Davila, Colan & Hasegawa, Image and Vision Computing 146 (2024) 105012 (arXiv 2406.10050)"
NOT_ENOUGH = "not enough results"


@dataclass
class Claim:
    id: str
    statement: str
    study: str
    ours: str
    verdict: str  # "consistent" | "not consistent" | "not enough results", with a reason after a colon
    details: dict[str, Any] = field(default_factory=dict)
    short: str = NOT_ENOUGH  # ours, in a few words


def delta_pp(delta: float) -> str:
    return f"{delta * 100:+.2f} pp"


def rel(delta: float, base: float) -> str:
    return f"{delta / base * 100:+.1f}% rel." if base else "n/a rel."


def _find(group: Group, name: str) -> str | None:
    return next((s for s in group.strategies if canonical_name(s) == name), None)


def _is_densenet121(backbone: str) -> bool:
    return backbone.lower().replace("-", "").replace("_", "") == "densenet121"


def lp_ft_share(group: Group) -> Claim:
    statement = "LP-FT beats FT in more than half of the cases"
    study = "> 50% of cases"
    lpft, ft = _find(group, "lp_ft"), _find(group, "ft")
    cases = [c for c in group.study_cases() if lpft in c.rows and ft in c.rows] if lpft and ft else []
    if not cases:
        return Claim("lp_ft_beats_ft", statement, study, f"{NOT_ENOUGH}: no case has both LP-FT and FT",
                     NOT_ENOUGH, {"cases": 0})
    per_case = []
    wins = 0
    for c in cases:
        a, b = c.rows[lpft].mean, c.rows[ft].mean
        win = a > b and not same(a, b)
        wins += win
        per_case.append({"dataset": c.dataset, "backbone": c.backbone, "metric": c.metric, "lp_ft": a, "ft": b,
                         "delta": a - b, "lp_ft_wins": win})
    share = wins / len(cases)
    ours = f"LP-FT beats FT in {wins} of {len(cases)} cases ({share * 100:.0f}%; n = {len(cases)} cases)"
    verdict = "consistent" if share > 0.5 else "not consistent"
    if len(cases) < 6:
        verdict += f": only {len(cases)} case{'s' if len(cases) != 1 else ''}, weak evidence"
    return Claim("lp_ft_beats_ft", statement, study, ours, verdict,
                 {"cases": len(cases), "wins": wins, "share": share, "per_case": per_case},
                 short=f"{wins}/{len(cases)} cases ({share * 100:.0f}%), n = {len(cases)}")


def auto_rgn_by_modality(group: Group) -> Claim:
    statement = "Auto-RGN improves on FT by up to 11% for specific modalities"
    study = "up to 11% (unit not stated: pp or relative)"
    rgn, ft = _find(group, "auto_rgn"), _find(group, "ft")
    cases = [c for c in group.study_cases() if rgn in c.rows and ft in c.rows] if rgn and ft else []
    if not cases:
        return Claim("auto_rgn_gain_by_modality", statement, study,
                     f"{NOT_ENOUGH}: no case has both Auto-RGN and FT", NOT_ENOUGH, {"modalities": []})
    by_mod: dict[str, list[Any]] = {}
    for c in cases:
        by_mod.setdefault(c.modality or "unknown", []).append(c)
    rows = []
    for mod in sorted(by_mod):
        best = max(by_mod[mod], key=lambda c: (c.rows[rgn].mean - c.rows[ft].mean, c.dataset, c.backbone))
        d, base = best.rows[rgn].mean - best.rows[ft].mean, best.rows[ft].mean
        rows.append({"modality": mod, "gain": d, "ft": base, "relative": d / base if base else None,
                     "dataset": best.dataset,
                     "backbone": best.backbone, "metric": best.metric, "cases": len(by_mod[mod])})
    top = max(rows, key=lambda r: (r["gain"], r["modality"]))
    per_mod = "; ".join(f"{r['modality']} {delta_pp(r['gain'])} ({r['dataset']}/{r['backbone']}, n = {r['cases']})"
                        for r in rows)
    ours = (f"largest gain {delta_pp(top['gain'])} ({rel(top['gain'], top['ft'])}) on {top['modality']} "
            f"({top['dataset']}/{top['backbone']}); per modality: {per_mod}; n = {len(cases)} cases")
    improved = [r["modality"] for r in rows if r["gain"] > 0 and not same(r["gain"], 0.0)]
    if improved:
        verdict = f"consistent: Auto-RGN beats FT on {', '.join(improved)}"
    else:
        verdict = "not consistent: Auto-RGN never beats FT here"
    return Claim("auto_rgn_gain_by_modality", statement, study, ours, verdict,
                 {"unit": "fraction of the metric (x100 = percentage points)", "modalities": rows,
                  "cases": len(cases)},
                 short=f"{delta_pp(top['gain'])} ({rel(top['gain'], top['ft'])}), {top['modality']}, n = {len(cases)}")


def best_alternative_by_backbone(group: Group) -> Claim:
    statement = "DenseNet-121 benefits most from the alternatives to FT"
    study = "DenseNet-121 gains most"
    ft = _find(group, "ft")
    per_backbone = []
    shared = group.study_cases()
    if ft:
        backbones = sorted({c.backbone for c in shared})
        for bb in backbones:
            cases = [c for c in shared if c.backbone == bb and ft in c.rows]
            best = None
            for s in group.study_strategies:
                if s == ft:
                    continue
                deltas = [c.rows[s].mean - c.rows[ft].mean for c in cases if s in c.rows]
                if deltas:
                    gain = sum(deltas) / len(deltas)
                    if best is None or gain > best[1] and not same(gain, best[1]):
                        best = (s, gain, len(deltas))
            if best:
                per_backbone.append({"backbone": bb, "best": best[0], "gain": best[1], "datasets": best[2]})
    if not per_backbone:
        return Claim("best_alternative_by_backbone", statement, study,
                     f"{NOT_ENOUGH}: no backbone has FT and another strategy in the same case", NOT_ENOUGH,
                     {"backbones": []})
    ours = "; ".join(f"{r['backbone']}: {delta_pp(r['gain'])} ({group.label(r['best'])}, n = {r['datasets']} "
                     f"dataset{'s' if r['datasets'] != 1 else ''})" for r in per_backbone)
    top_gain = max(r["gain"] for r in per_backbone)
    leaders = [r["backbone"] for r in per_backbone if same(r["gain"], top_gain)]
    dense = next((r for r in per_backbone if _is_densenet121(r["backbone"])), None)
    if len(per_backbone) < 2:
        verdict = f"{NOT_ENOUGH}: only one backbone ({per_backbone[0]['backbone']})"
    elif dense is None:
        verdict = f"{NOT_ENOUGH}: no DenseNet-121 results"
    elif dense["backbone"] in leaders:
        verdict = "consistent" + (": tied with " + ", ".join(b for b in leaders if b != dense["backbone"])
                                  if len(leaders) > 1 else "")
    else:
        verdict = f"not consistent: largest gain for {', '.join(leaders)}"
    top = next(r for r in per_backbone if r["backbone"] in leaders)
    return Claim("best_alternative_by_backbone", statement, study, ours, verdict,
                 {"unit": "fraction of the metric (x100 = percentage points)", "backbones": per_backbone,
                  "largest": leaders},
                 short=f"largest: {', '.join(leaders)} {delta_pp(top['gain'])} ({group.label(top['best'])})")


METHOD = [
    "1: share of (dataset, backbone) cases where LP-FT's mean over seeds is above FT's (ties are not wins).",
    "2: per modality, the largest Auto-RGN − FT difference over its cases, in percentage points (pp) of the "
    "metric (FT 80.0% → 88.8% = +8.8 pp), the relative gain ('rel.', Δ / FT) alongside; the study's '11%' "
    "does not say which of the two it is.",
    "3: per backbone, the study's strategy other than FT with the largest mean Δ against FT over the backbone's "
    "datasets; consistent when DenseNet-121's gain is the largest (needs two backbones or more).",
    "Claims 1-3: only the study's eight strategies, on the (dataset, backbone) cases that all of those present "
    "share; n is the number of cases (claim 3: datasets per backbone) each figure rests on.",
]


def compute_claims(group: Group) -> list[Claim]:
    return [lp_ft_share(group), auto_rgn_by_modality(group), best_alternative_by_backbone(group)]
