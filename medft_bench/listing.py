"""What ``python -m medft_bench list`` shows: the datasets with their files' state, the tiers with their size
and an estimate of their duration on this machine."""

from __future__ import annotations

import os
import statistics
from typing import Any


def dataset_rows(data_root: str | os.PathLike[str] | None = None) -> list[tuple[str, str, str, str, str]]:
    """(name, modality, task, classes, on disk) for every MedMNIST flag and registered folder dataset."""
    from medft_bench.data import folders
    from medft_bench.data import medmnist as mm
    from medft_bench.errors import DataError

    rows = []
    root = mm.resolve_root(data_root)
    for flag in mm.flags():
        meta = mm.info(flag)
        sizes = [s for s in mm.SIZES if (root / mm.file_name(flag, s)).is_file()]
        disk = f"{', '.join(f'{s} px' for s in sizes)} in {root}" if sizes else "no (downloaded when first run)"
        rows.append((flag, mm.MODALITY.get(flag, ""), meta["task"], str(len(meta["label"])), disk))
    for name, spec in sorted(folders.registry().items()):
        try:
            disk = f"yes: {folders.locate(spec, data_root)}"
        except DataError:
            disk = f"no (see {spec.url})" if spec.url else "no"
        classes = str(len(spec.classes)) if spec.classes else "from the folders"
        rows.append((name, spec.modality, spec.task, classes, disk))
    return rows


def tier_rows(results_dir: str | os.PathLike[str]) -> list[tuple[str, str, str, str]]:
    """(tier, cells, estimated time, description); the estimate comes from the records in ``results_dir``."""
    from medft_bench.grid import build_grid
    from medft_bench.results.store import load_records
    from medft_bench.tiers import TIERS

    records, _ = load_records([results_dir]) if os.path.isdir(results_dir) else ([], [])
    rows = []
    for tier in TIERS.values():
        cells = build_grid(tier, check=False)
        rows.append((tier.name, str(len(cells)), estimate_text(cells, records, results_dir), tier.description))
    return rows


def cell_seconds(cells: list[Any], records: list[dict[str, Any]]) -> tuple[float | None, int]:
    """Estimated seconds to compute ``cells`` here, and how many of them have a record already (cost 0).

    A cell without a record costs the median wall time of the recorded cells of its tier and backbone, else of
    its tier; None when the tier has no record at all (nothing on this machine to go by).
    """
    by_hash = {r["config_hash"] for r in records}
    walls: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        if r["status"] in ("ok", "diverged") and r["costs"].get("wall_s"):
            tier, backbone = r["cell"]["tier"], r["cell"]["backbone"]
            walls.setdefault((tier, backbone), []).append(r["costs"]["wall_s"])
            walls.setdefault((tier,), []).append(r["costs"]["wall_s"])
    total, done = 0.0, 0
    for c in cells:
        if c.config_hash in by_hash:
            done += 1
            continue
        known = walls.get((c.tier, c.backbone)) or walls.get((c.tier,))
        if not known:
            return None, done
        total += statistics.median(known)
    return total, done


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate_text(cells: list[Any], records: list[dict[str, Any]], where: Any) -> str:
    seconds, done = cell_seconds(cells, records)
    if seconds is None:
        return f"unknown (no record in {where} yet)"
    reused = f", {done} reused" if done else ""
    return f"~{duration(seconds)} (est. from records{reused})"
