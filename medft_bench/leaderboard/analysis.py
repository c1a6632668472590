"""What the leaderboard concludes from a group, computed once and read by the tables and ``summary.json``."""

from __future__ import annotations

from medft_bench.leaderboard.aggregate import Row


def unconverged_probes(row: Row) -> int:
    """How many of ``row``'s ok seeds have a linear-probe solve that says it did not converge."""
    return sum(1 for r in row.ok if r.probe_converged is False)
