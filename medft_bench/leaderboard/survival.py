"""Does an advantage over FT survive tuning? A strategy's mean Δ against FT under the study's protocol next to
its Δ under the tuned one, each computed within its own group: the one place two groups meet."""

from __future__ import annotations

from dataclasses import dataclass

from medft_bench.leaderboard import stats
from medft_bench.leaderboard.aggregate import BASELINE, Group
from medft_bench.leaderboard.names import canonical_name, strategy_sort_key


@dataclass
class Survival:
    """One strategy's mean Δ against FT under the study's protocol and under the tuned one, on the same cases."""

    strategy: str
    study: float  # mean Δ vs FT (fraction of the metric) over the matched cases, study protocol
    tuned: float  # the same cases, tuned protocol
    cases: list[tuple[str, str]]  # (dataset, backbone) cases where both protocols have the strategy and FT

    @property
    def flip(self) -> bool:
        """The sign of the advantage changes with tuning (a zero Δ on either side is no flip)."""
        return not (stats.same(self.study, 0.0) or stats.same(self.tuned, 0.0)) and (self.study > 0) != (self.tuned > 0)


def protocol_pairs(groups: list[Group]) -> list[tuple[Group, Group]]:
    """(study group, tuned group) of each setting (tier, data, weights, image size) that has both."""
    study = {g.key.setting: g for g in groups if g.key.protocol == "study"}
    return [(study[g.key.setting], g) for g in groups if g.key.protocol == "tuned" and g.key.setting in study]


def survival(study: Group, tuned: Group) -> list[Survival]:
    """For each strategy other than FT in both groups: its mean Δ against FT under each protocol, over the cases
    that have the strategy and FT under both (so that the two means rest on the same cases)."""
    out = []
    deltas_s = {c.key: c.deltas for c in study.cases}
    deltas_t = {c.key: c.deltas for c in tuned.cases}
    for s in sorted(set(study.strategies) & set(tuned.strategies), key=strategy_sort_key):
        if canonical_name(s) == BASELINE:
            continue
        cases = sorted(k for k in deltas_s.keys() & deltas_t.keys() if s in deltas_s[k] and s in deltas_t[k])
        if cases:
            out.append(Survival(s, sum(deltas_s[k][s] for k in cases) / len(cases),
                                sum(deltas_t[k][s] for k in cases) / len(cases), cases))
    return out
