"""The leaderboard's tables as plain data (text cells with a style), built once and rendered by every output:
Markdown (:mod:`render_markdown`), HTML (:mod:`render_html`), rich and plain text (:mod:`render_rich`).

One module per topic: :mod:`.model` (Cell, Column, Table), :mod:`.format` (numbers and marks), :mod:`.results`,
:mod:`.strategy`, :mod:`.claims`, :mod:`.frozen`, :mod:`.recommendations`, :mod:`.notes`; this module lists a
group's tables in their order."""

from __future__ import annotations

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.tables.claims import claims_table
from medft_bench.leaderboard.tables.frozen import frozen_reference_table
from medft_bench.leaderboard.tables.model import Table
from medft_bench.leaderboard.tables.results import (
    delta_table,
    details_table,
    incidents_table,
    rank_table,
    results_table,
)
from medft_bench.leaderboard.tables.strategy import strategy_table


def group_tables(group: Group, all_metrics: bool = False) -> list[Table]:
    from medft_bench.leaderboard.literature import literature_table, provenance_table  # built on this module

    tables = [results_table(group), literature_table(group), provenance_table(group), delta_table(group),
              rank_table(group), strategy_table(group),
              frozen_reference_table(group), details_table(group, all_metrics), claims_table(group),
              incidents_table(group)]
    return [t for t in tables if t is not None]
