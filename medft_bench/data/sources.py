"""One entry point for every dataset source: MedMNIST files, synthetic MedMNIST-format files, folders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medft_bench.cache import cache_dir, cache_write_error
from medft_bench.data import folders, synthetic
from medft_bench.data import medmnist as mm
from medft_bench.data.arrays import DataBundle
from medft_bench.errors import DataError, unknown


def synthetic_root(splits: dict[str, int], seed: int) -> Path:
    tag = "-".join(f"{k}{splits[k]}" for k in sorted(splits))
    return cache_dir() / "synthetic" / f"v{synthetic.GENERATOR_VERSION}-seed{seed}-{tag}"


def load_synthetic(flag: str, size: int, splits: dict[str, int] | None = None, seed: int = 0) -> DataBundle:
    """Synthetic data in the format of MedMNIST ``flag``, written once and read through the real loader."""
    splits = {**synthetic.DEFAULT_SPLITS, **(splits or {})}
    root = synthetic_root(splits, seed)
    path = root / mm.file_name(flag, size, official=False)
    if not path.is_file():
        _write_synthetic(flag, size, root, splits, seed, path)
    try:
        bundle = mm.read_file(flag, path, size)
    except DataError:  # a generated file, truncated or damaged in the cache: make it again, never "download" it
        path.unlink(missing_ok=True)
        _write_synthetic(flag, size, root, splits, seed, path)
        bundle = mm.read_file(flag, path, size)
    bundle.identity.update(
        source="synthetic", synthetic=True, generator_version=synthetic.GENERATOR_VERSION, data_seed=seed
    )
    return bundle


def _write_synthetic(flag: str, size: int, root: Path, splits: dict[str, int], seed: int, path: Path) -> None:
    try:
        synthetic.write_synthetic_medmnist(flag, size, root, splits, seed)
    except OSError as exc:  # a read-only or full cache: one line, not zipfile's traceback (nothing half-written stays)
        raise cache_write_error("the synthetic data file", path, exc) from None


def load_dataset(
    name: str,
    size: int = 28,
    *,
    synthetic_data: bool = False,
    root: str | os.PathLike[str] | None = None,
    synthetic_splits: dict[str, int] | None = None,
    download: bool = True,
    mirror: str | None = None,
) -> DataBundle:
    """Load dataset ``name`` at ``size`` px: MedMNIST (real or synthetic) or a registered folder dataset. ``mirror``:
    where a missing MedMNIST file is downloaded from (``--medmnist-url``; :func:`medmnist.mirror_url`)."""
    if name in folders.registry():
        if synthetic_data:
            raise ValueError(f"{name} is a folder dataset; synthetic data exists only for MedMNIST flags")
        return folders.load_folder_dataset(name, size, root)
    if name not in mm.flags():
        raise mm.UnknownDatasetError(*unknown("dataset", name, dataset_names()).args)
    if synthetic_data:
        return load_synthetic(name, size, synthetic_splits)
    return mm.load_medmnist(name, size, root, download_missing=download, mirror=mirror)


def data_identity(name: str, size: int, *, synthetic_data: bool = False, root: str | os.PathLike[str] | None = None,
                  download: bool = True, mirror: str | None = None) -> str:
    """What identifies the data a cell would load, cheaply: ``md5:<MD5>`` of a MedMNIST file (remembered by size
    and mtime, so a file is hashed once), ``folder:<fingerprint>`` of a folder dataset (its file list), or ``""``
    for synthetic data (defined by the configuration). A missing MedMNIST file is downloaded first when allowed;
    missing data raises :class:`DatasetNotFoundError` as loading would."""
    if synthetic_data:
        return ""
    if name in folders.registry():
        return f"folder:{folders.fingerprint(folders.scan(name, root))}"
    if name not in mm.flags():
        raise mm.UnknownDatasetError(*unknown("dataset", name, dataset_names()).args)
    return f"md5:{mm.file_md5(mm.local_file(name, size, root, download_missing=download, mirror=mirror))}"


def recorded_identity(data: dict[str, Any]) -> str:
    """The :func:`data_identity` of the data a record's ``data`` section describes."""
    if data.get("synthetic"):
        return ""
    return f"folder:{data['fingerprint']}" if data.get("source") == "folder" else f"md5:{data['md5']}"


def dataset_names() -> list[str]:
    return mm.flags() + sorted(folders.registry())
