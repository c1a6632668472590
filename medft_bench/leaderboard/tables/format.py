"""How the tables write numbers and name what they show: percentages, percentage points, seconds, counts, the
metric a group is ranked by, and the marks that tables and their notes share."""

from __future__ import annotations

from medft_bench.leaderboard.aggregate import Group, Row
from medft_bench.leaderboard.stats import same
from medft_bench.leaderboard.tables.model import left
from medft_bench.vocabulary import METRIC_NAMES

DASH = "—"
MAJORITY_MARK = "†"
INCOMPLETE_MARK = "‡"  # the method did not complete as specified (record: strategy.complete false)


UNCONVERGED_MARK = "‡"


def pct(v: float | None) -> str:
    return DASH if v is None else f"{v * 100:.2f}"


def pp(d: float | None) -> str:
    return DASH if d is None else f"{d * 100:+.2f}"


def seconds(v: float | None) -> str:
    return DASH if v is None else f"{v:.1f}"


def count(n: int | None) -> str:
    if n is None:
        return DASH
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def memory(row: Row) -> str:
    mb, kind = row.costs["peak_mem_mb"], row.costs["peak_mem_kind"]
    return DASH if mb is None else f"{mb:.0f} {'GPU' if kind == 'gpu' else 'host'}"


def delta_style(d: float) -> str | None:
    return None if same(d, 0.0) else ("pos" if d > 0 else "neg")


def metric_desc(group: Group, splits: bool = True) -> str:
    """Which metric the group's numbers are, e.g. 'test AUC (chestmnist); test balanced accuracy (others)', and
    (``splits``) how many images each dataset's splits hold: a difference on 16 test images is not one on 600."""
    used = group.metrics_used
    if len(used) == 1:
        text = f"test {METRIC_NAMES[next(iter(used))]}, %"
    else:
        text = "; ".join(f"test {METRIC_NAMES[m]}, % ({', '.join(ds)})" for m, ds in used.items())
    return f"{text}; {split_sizes(group)}" if splits and split_sizes(group) else text


def split_sizes(group: Group) -> str:
    """'images train/val/test: pneumoniamnist 4708/524/624' over the group's records (every distinct size)."""
    sizes: dict[str, set[str]] = {}
    for run in group.runs:
        sp = run.splits
        if all(isinstance(sp.get(k), int) for k in ("train", "val", "test")):
            sizes.setdefault(run.dataset, set()).add(f"{sp['train']}/{sp['val']}/{sp['test']}")
    if not sizes:
        return ""
    return "images train/val/test: " + ", ".join(f"{d} {' or '.join(sorted(v))}" for d, v in sorted(sizes.items()))


def title(group: Group, what: str) -> str:
    return f"{what} — {group.key.label}"


CASE_KEYS = (left("dataset", key=True), left("backbone", key=True), left("metric", key=True))
