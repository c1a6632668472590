"""What ``python -m medft_bench list`` shows: the datasets with their files' state, the tiers with their size
and an estimate of their duration on this machine."""

from __future__ import annotations

import os
from typing import Any


def dataset_rows(data_root: str | os.PathLike[str] | None = None) -> list[tuple[str, str, str, str, str]]:
    """(name, modality, task, classes, on disk) for every MedMNIST flag and registered folder dataset."""
    from medft_bench.data import folders
    from medft_bench.data import medmnist as mm
    from medft_bench.errors import DataError
    from medft_bench.vocabulary import MODALITY

    rows = []
    root = mm.resolve_root(data_root)
    for flag in mm.flags():
        meta = mm.info(flag)
        sizes = [s for s in mm.SIZES if (root / mm.file_name(flag, s)).is_file()]
        bundled = [s for s in mm.SIZES if s not in sizes and mm.bundled_file(flag, s) is not None]
        parts = ([f"{', '.join(f'{s} px' for s in sizes)} in {root}"] if sizes else []) + (
            [f"{', '.join(f'{s} px' for s in bundled)} bundled with medft-bench"] if bundled else [])
        disk = "; ".join(parts) or "no (downloaded when first run)"
        rows.append((flag, MODALITY.get(flag, ""), meta["task"], str(len(meta["label"])), disk))
    for name, spec in sorted(folders.registry().items()):
        try:
            disk = f"yes: {folders.locate(spec, data_root)}"
        except DataError:
            disk = f"no (see {spec.source})"
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


def estimate_text(cells: list[Any], records: list[dict[str, Any]], where: Any) -> str:
    from medft_bench.estimate import cell_seconds, duration

    seconds, done = cell_seconds(cells, records)
    if seconds is None:
        return f"unknown (no record in {where} yet)"
    reused = f", {done} reused" if done else ""
    return f"~{duration(seconds)} (est. from records{reused})"
