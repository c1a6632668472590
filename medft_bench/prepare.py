"""``python -m medft_bench download``: fetch and verify every file the selected cells need, on a machine that is
online, so that the same selection then runs offline (MedMNIST's ``download`` does this for its files).

It selects the cells with the run options (``--tier``, ``--datasets``, ``-k``-like filters are pytest's; here the
same ``--datasets``/``--backbones``/``--strategies``/``--img-sizes``), then for each MedMNIST file of a real-data
cell: present under ``--data-root`` with the official MD5, the bundled copy, or downloaded and checked; for each
backbone with weights other than ``random``: built once, which loads the weights (the hub's into its cache, a
package's from the package, a file's from its path). A line per file says what it is and where, and the exit
code says whether all are ready (0) or not (1). With ``--no-download`` it only checks.

:func:`blockers` asks the same of a run about to start (the pytest plugin, before the cells): what stops some of
its cells, each file once, so that the run says it on its first screen rather than once per cell.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from medft_bench.errors import MedftError

if TYPE_CHECKING:
    from medft_bench.run_env import RunEnv


@dataclass(frozen=True)
class Item:
    kind: str  # "data" or "weights"
    name: str
    ready: bool
    detail: str
    cells: tuple[str, ...] = ()  # the ids of the cells that need it
    blocks: bool = False  # its cells cannot run (an unofficial copy is not ready, yet its cells run)


def _ids(cells: list) -> tuple[str, ...]:
    return tuple(c.cell_id for c in cells)


def data_items(cells: list, data_root: str | None, download: bool, mirror: str | None = None) -> list[Item]:
    """Each MedMNIST file (present with its MD5, bundled, or downloaded now) and folder dataset the cells read."""
    from medft_bench.data import folders
    from medft_bench.data.medmnist import ensure_file, flags, is_bundled

    out = []
    real = [c for c in cells if not c.synthetic]
    for dataset, size in sorted({(c.dataset, c.img_size) for c in real if c.dataset in flags()}):
        name, ids = f"{dataset} {size} px", _ids([c for c in real if (c.dataset, c.img_size) == (dataset, size)])
        try:
            path, verified = ensure_file(dataset, size, data_root, download_missing=download, mirror=mirror)
        except MedftError as exc:
            out.append(Item("data", name, False, str(exc), ids, blocks=True))
            continue
        where = "bundled with medft-bench" if is_bundled(path) else str(path)
        out.append(Item("data", name, verified, f"{where}: " + (
            "official MD5 verified" if verified else "NOT the official file (its MD5 differs): replace it with "
            "the official one, or its records are grouped apart as an unofficial copy"), ids))
    registry = folders.registry()
    for dataset in sorted({c.dataset for c in real if c.dataset in registry}):
        ids = _ids([c for c in real if c.dataset == dataset])
        try:
            out.append(Item("data", dataset, True, str(folders.locate(registry[dataset], data_root)), ids))
        except MedftError as exc:
            out.append(Item("data", dataset, False, str(exc), ids, blocks=True))
    return out


def weight_items(cells: list) -> list[Item]:
    """Each backbone's weights (other than random), loaded once: the hub's into its cache, a package's, a file's."""
    from medft_bench.models.factory import create_backbone

    out = []
    for backbone, weights in sorted({(c.backbone, c.weights) for c in cells if c.weights != "random"}):
        name = f"{backbone} ({weights})"
        ids = _ids([c for c in cells if (c.backbone, c.weights) == (backbone, weights)])
        try:
            built = create_backbone(backbone, 2, weights)
        except MedftError as exc:
            out.append(Item("weights", name, False, str(exc), ids, blocks=True))
            continue
        w = built.weights
        where = {"hub": f"the hub's {w.get('tag')}, now in its cache", "file": w.get("file"),
                 "package": f"package {w.get('package')} {w.get('package_version')}"}.get(w.get("source"), weights)
        out.append(Item("weights", name, True, f"loaded from {where}", ids))
    return out


def blockers(cells: list, env: RunEnv) -> list[Item]:
    """What stops some of ``cells`` from running, each file once, before any runs: a data file missing (after a
    download, when allowed), then weights that do not load for the cells that compute (a cell with a record is
    reused and needs none)."""
    from medft_bench.runner import resolved

    def reused(cell: Any) -> bool:
        if env.rerun or env.store is None:
            return False
        try:
            return env.store.lookup(resolved(cell, env)) is not None
        except MedftError:  # the cell says what is wrong when it runs
            return False

    data = [it for it in data_items(cells, None if env.data_root is None else str(env.data_root), env.download,
                                    env.medmnist_url) if it.blocks]
    missing = {i for it in data for i in it.cells}
    compute = [c for c in cells if c.cell_id not in missing and c.weights != "random" and not reused(c)]
    return data + [it for it in weight_items(compute) if it.blocks]


def prepare(args: argparse.Namespace) -> int:
    from medft_bench.options import build_cells, register_folder_datasets
    from medft_bench.text import printable

    register_folder_datasets(args)
    tier, cells = build_cells(args)
    if not cells:
        raise MedftError("the options select no cell: nothing to prepare")
    items = data_items(cells, args.data_root, not args.no_download, args.medmnist_url) + weight_items(cells)
    for it in items:
        print(printable(f"{'ready  ' if it.ready else 'MISSING'} {it.kind:7s} {it.name}: {it.detail}"))
    missing = sum(not it.ready for it in items)
    print(f"tier {tier.name}, {len(cells)} cell{'s' if len(cells) != 1 else ''}: "
          + (f"{len(items)} file{'s' if len(items) != 1 else ''} ready; it runs offline (MEDFT_OFFLINE=1, "
             "HF_HUB_OFFLINE=1)" if not missing else f"{missing} of {len(items)} not ready (above)")
          + ("" if items else " (synthetic data and random weights: nothing to download)"))
    return 1 if missing else 0
