"""The leaderboard's data model: a group's rows (dataset, backbone, strategy over seeds) and cases (dataset,
backbone), built by :mod:`aggregate`. Below the modules that draw conclusions from a group (:mod:`analysis`,
:mod:`recommend`, :mod:`claims`), which :mod:`aggregate` calls, so that none of them imports another in a circle.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from medft_bench.leaderboard import stats
from medft_bench.leaderboard.group_key import GroupKey
from medft_bench.leaderboard.load import Run
from medft_bench.leaderboard.names import find, lookup

BASELINE = "ft"


@dataclass
class Row:
    """One (dataset, backbone, strategy) over seeds, within a group."""

    dataset: str
    backbone: str
    strategy: str
    metric: str
    task: str
    modality: str
    summary: stats.Summary
    seeds: list[int]  # seeds of the ok runs that have the metric
    values: list[float]
    ok: list[Run] = field(repr=False)
    diverged: list[Run] = field(repr=False)
    failed: list[Run] = field(repr=False)
    no_metric: list[Run] = field(repr=False)  # ok runs where the chosen metric is missing (null)
    majority: list[tuple[Run, str]] = field(repr=False)  # ok runs no better than the majority class
    others: dict[str, stats.Summary]
    costs: dict[str, Any]
    # failures counted: every ok value plus, for each diverged or failed seed, the chance score
    # (stats.chance_score: what predicting the majority class scores)
    val_values: list[float | None] = field(default_factory=list)  # validation metric of the same seeds (selection)
    values_all: list[float] = field(default_factory=list)
    summary_all: stats.Summary = field(default_factory=lambda: stats.summarize([]))
    by_seed_all: dict[int, tuple[float | None, float | None]] = field(default_factory=dict)  # seed -> (test, val)
    # seeds counted as failed: not ok, or an ok run whose test score is no better than the majority class's on
    # this row's metric (stats.chance_score); they score the chance score in values_all and by_seed_all
    failed_seeds: list[int] = field(default_factory=list)
    # ok runs whose method did not complete as specified (strategy.complete false), with the record's reason:
    # flagged in every table and kept out of the answer
    incomplete: list[tuple[Run, str]] = field(default_factory=list)

    @property
    def case(self) -> tuple[str, str]:
        return (self.dataset, self.backbone)

    @property
    def grid_edges(self) -> dict[str, int]:
        """How many ok seeds chose their tuning grid's lowest or highest rate (``RecordView.grid_edge``), by
        edge; with ``"of"``, the ok seeds that swept a grid. Empty when none did."""
        edges = [r.grid_edge for r in self.ok if len((r.tuning or {}).get("grid") or []) >= 3]
        if not edges:
            return {}
        return {"of": len(edges), **{e: edges.count(e) for e in ("lowest", "highest") if edges.count(e)}}

    @property
    def mean(self) -> float | None:
        return self.summary.mean


@dataclass
class Case:
    """One (dataset, backbone) within a group: the strategies' means, ranks and deltas against FT."""

    dataset: str
    backbone: str
    metric: str
    modality: str
    rows: dict[str, Row]  # by strategy, only rows with a mean
    ranks: dict[str, float]
    deltas: dict[str, float]  # strategy -> mean - FT mean (fraction of the metric); empty without FT
    means_all: dict[str, float] = field(default_factory=dict)  # failures counted (chance score), every strategy
    deltas_all: dict[str, float] = field(default_factory=dict)  # failures counted

    @property
    def key(self) -> tuple[str, str]:
        return (self.dataset, self.backbone)

    @property
    def baseline(self) -> Row | None:
        return lookup(self.rows, BASELINE)


@dataclass
class GroupData:
    """A group's rows, cases, ranks and tests against FT: what its conclusions are drawn from
    (:mod:`analysis`, :mod:`recommend`, :mod:`claims` read it). :class:`aggregate.Group` adds the conclusions."""

    key: GroupKey
    rows: list[Row]
    cases: list[Case]
    strategies: list[str]
    runs: list[Run] = field(repr=False)
    study_strategies: list[str] = field(default_factory=list)  # those of the study's eight present (by name)
    avg_ranks: dict[str, tuple[float, int]] = field(default_factory=dict)  # strategy -> (avg rank, n cases)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # strategy -> t over datasets vs FT
    common_strategies: list[str] = field(default_factory=list)  # those with a mean in every case
    avg_ranks_common: dict[str, float] = field(default_factory=dict)  # ranks among common_strategies only
    claims: list[Any] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # strategy -> the label its records carry

    def label(self, strategy: str) -> str:
        """How tables name ``strategy``: the label its strategy declared (in the records), else its name."""
        return self.labels.get(strategy, strategy)

    @property
    def baseline(self) -> str | None:
        return find(self.strategies, BASELINE)

    @property
    def metrics_used(self) -> dict[str, list[str]]:
        """metric -> datasets ranked by it."""
        out: dict[str, set[str]] = defaultdict(set)
        for r in self.rows:
            out[r.metric].add(r.dataset)
        return {m: sorted(ds) for m, ds in sorted(out.items())}

    def study_cases(self) -> list[Case]:
        """The cases that every one of the study's strategies present in the group has a result for: what the
        study's claims are computed on, so that each comparison draws on the same cases."""
        return [c for c in self.cases if all(s in c.rows for s in self.study_strategies)]

    def status_counts(self) -> dict[str, int]:
        counts = {"ok": 0, "diverged": 0, "failed": 0}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return counts
