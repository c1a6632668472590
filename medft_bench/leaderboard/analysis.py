"""What the leaderboard concludes from a group beyond its means, ranks and tests, computed once per group
(``Group.analysis``) and read by both the tables and ``summary.json``, so that the pages and the JSON cannot
disagree: the recommendations (:func:`recommend.recommend`, run once), each strategy's wins, ties and losses
against FT, and each case against its frozen-feature references."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medft_bench.leaderboard.groups import GroupData as Group
from medft_bench.leaderboard.groups import Row
from medft_bench.leaderboard.names import canonical_name, lookup, strategy_sort_key
from medft_bench.leaderboard.recommend import Recommendation, recommend, row_scores
from medft_bench.leaderboard.separation import Spread
from medft_bench.leaderboard.stats import ALPHA, same

FROZEN_GAP = 0.05  # LP this far below kNN on the same features: the probe is suspect, not the features


@dataclass(frozen=True)
class VersusFT:
    """One strategy's cases against FT: wins, ties and losses of its case mean over seeds, and the cases where
    Welch's t over seeds gives p < ALPHA above or below FT (evidence about those cases, not across datasets)."""

    strategy: str
    wins: int
    ties: int
    losses: int
    within_case_above: int
    within_case_below: int
    within_case_tested: int  # cases with both the strategy and FT


@dataclass(frozen=True)
class FrozenReference:
    """One case against its frozen-feature references: kNN and the linear probe read the same features.
    Means and differences are fractions of the case's metric (None where a strategy has no result)."""

    dataset: str
    backbone: str
    feature_cosine: float | None  # mean head.feature_cosine of LP's ok runs, else kNN's
    knn: float | None
    lp: float | None
    lp_seeds: int  # LP's ok seeds
    lp_unconverged: int  # of those, the ones whose probe solve did not converge
    lp_minus_knn: float | None
    lp_ft_minus_lp: float | None
    below_lp: list[str]  # strategies other than LP and kNN whose mean is below LP's
    probe_suspect: bool  # LP below kNN by more than FROZEN_GAP
    lp_ft_lost: bool  # LP-FT below LP


@dataclass
class Analysis:
    """A group's conclusions, once: its recommendations, each strategy against FT (none without FT), and each
    case with LP or kNN against those references."""

    recommendations: list[Recommendation]
    versus_ft: dict[str, VersusFT]
    frozen: list[FrozenReference]
    # (dataset, backbone, strategy) -> test score, failures counted, with the answer's 95% interval
    scores: dict[tuple[str, str, str], Spread] = field(default_factory=dict)


def unconverged_probes(row: Row) -> int:
    """How many of ``row``'s ok seeds have a linear-probe solve that says it did not converge."""
    return sum(1 for r in row.ok if r.probe_converged is False)


def versus_ft(group: Group) -> dict[str, VersusFT]:
    """Every strategy but FT against FT over the group's cases; empty when the group has no FT."""
    base = group.baseline
    if base is None:
        return {}
    out = {}
    for s in group.strategies:
        if s == base:
            continue
        deltas = [cs.deltas[s] for cs in group.cases if s in cs.deltas]
        wins = sum(1 for d in deltas if d > 0 and not same(d, 0))
        ties = sum(1 for d in deltas if same(d, 0))
        tested = group.tests.get(s, {}).get("within_case", [])
        within = [w for w in tested if w["p"] is not None and w["p"] < ALPHA]
        above = sum(1 for w in within if w["delta"] > 0)
        out[s] = VersusFT(s, wins, ties, len(deltas) - wins - ties, above, len(within) - above, len(tested))
    return out


def frozen_references(group: Group) -> list[FrozenReference]:
    """Each case that has LP or kNN, against them (see :class:`FrozenReference`)."""
    out = []
    for case in group.cases:
        knn = lookup(case.rows, "knn")
        lp = lookup(case.rows, "lp")
        lpft = lookup(case.rows, "lp_ft")
        if lp is None and knn is None:
            continue
        gap = lp.mean - knn.mean if lp is not None and knn is not None else None
        below = sorted((s for s, r in case.rows.items() if lp is not None and canonical_name(s) not in ("lp", "knn")
                        and r.mean < lp.mean and not same(r.mean, lp.mean)), key=strategy_sort_key)
        lpft_gap = lpft.mean - lp.mean if lpft is not None and lp is not None else None
        out.append(FrozenReference(
            case.dataset, case.backbone, _feature_cosine([r for r in (lp, knn) if r is not None]),
            knn.mean if knn else None, lp.mean if lp else None, len(lp.ok) if lp else 0,
            unconverged_probes(lp) if lp is not None else 0, gap, lpft_gap, below,
            gap is not None and gap < -FROZEN_GAP, lpft_gap is not None and lpft_gap < 0 and not same(lpft_gap, 0.0)))
    return out


def _feature_cosine(rows: list[Any]) -> float | None:
    """The mean ``head.feature_cosine`` of the first of ``rows`` (LP's, else kNN's) whose ok runs record it."""
    for row in rows:
        values = [v for v in (r.head.get("feature_cosine") for r in row.ok)
                  if isinstance(v, (int, float))]
        if values:
            return sum(values) / len(values)
    return None


def analyze(group: Group) -> Analysis:
    """The group's analysis; read it as ``group.analysis`` (computed on first use, then kept)."""
    return Analysis(recommend(group), versus_ft(group), frozen_references(group), row_scores(group))
