"""How long cells take here, estimated from the records on disk, and the grid-level count shown while they run."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from medft_bench.results.identity import cell_hashes
from medft_bench.results.store import load_records


def cell_estimates(cells: list[Any], records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Seconds each cell will take: 0 for a cell with a record (reused), else the median wall time of the
    recorded cells of its tier and backbone, else of its tier; None when its tier has no record at all."""
    have = {r["config_hash"] for r in records}  # a record found under any of a cell's hashes is reused
    walls: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        if r["status"] in ("ok", "diverged") and r["costs"].get("wall_s"):
            tier, backbone = r["cell"]["tier"], r["cell"]["backbone"]
            walls.setdefault((tier, backbone), []).append(r["costs"]["wall_s"])
            walls.setdefault((tier,), []).append(r["costs"]["wall_s"])
    out: dict[str, float | None] = {}
    for c in cells:
        known = walls.get((c.tier, c.backbone)) or walls.get((c.tier,))
        out[c.cell_id] = 0.0 if have.intersection(cell_hashes(c)) else (statistics.median(known) if known else None)
    return out


def cell_seconds(cells: list[Any], records: list[dict[str, Any]]) -> tuple[float | None, int]:
    """Estimated seconds for ``cells`` (None: unknown) and how many of them have a record already."""
    est = cell_estimates(cells, records)
    done = sum(1 for v in est.values() if v == 0.0)
    return (None if any(v is None for v in est.values()) else sum(est.values())), done


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class GridCount:
    """Cell k of n with the outcomes so far and the time left: records' estimates for the cells still to run,
    and, for cells without one, the mean time of the cells computed in this run."""

    def __init__(self, cells: list[Any], results_dir: Any) -> None:
        try:
            records, _ = load_records([results_dir])
        except OSError:
            records = []
        self.estimates = cell_estimates(cells, [r for r in records])
        self.order = [c.cell_id for c in cells]
        self.counts: Counter[str] = Counter()
        self.finished: set[str] = set()
        self.computed_s: list[float] = []
        self._started: float | None = None

    def start(self, cell_id: str) -> str:
        """The line to show as ``cell_id`` starts."""
        self._started = time.perf_counter()
        k = len(self.finished) + 1
        so_far = ", ".join(f"{n} {s}" for s, n in self.counts.items()) or "none finished"
        return f"cell {k}/{len(self.order)} {cell_id} · {so_far} · {self.left()}"

    def finish(self, cell_id: str, status: str, seconds: float | None = None) -> None:
        self.finished.add(cell_id)
        self.counts[status] += 1
        if status == "computed":
            took = seconds if seconds is not None else (time.perf_counter() - (self._started or time.perf_counter()))
            self.computed_s.append(took)

    def left(self) -> str:
        rest = [self.estimates.get(c) for c in self.order if c not in self.finished]
        unknown = sum(1 for v in rest if v is None)
        known = sum(v for v in rest if v is not None)
        if unknown and not self.computed_s:
            return "time left unknown" if not known else f"over {duration(known)} left"
        known += unknown * (statistics.mean(self.computed_s) if unknown else 0)
        return f"~{duration(known)} left (est.)"
