"""The benchmark grid: every dataset x image size x backbone x strategy x seed of a tier, and its shards."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from medft_bench.config import CellConfig, check_numbers, check_protocol, freeze_params
from medft_bench.errors import MedftError
from medft_bench.tiers import Tier

BOTH = "both"  # --protocol both: the study's cells, and the tier's tuned cells under the tuned protocol too


@dataclass
class GridOptions:
    """Overrides of a tier's presets (None keeps the tier's value)."""

    datasets: list[str] | None = None
    backbones: list[str] | None = None
    strategies: list[str] | None = None
    seeds: list[int] | None = None
    img_sizes: list[int] | None = None
    weights: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # TrainSettings overrides: epochs, max_train_samples...
    shard: tuple[int, int] | None = None  # (i, n), 1-based
    # Generated MedMNIST-format data in place of the real files; the dict holds split sizes ({} = the tier's or
    # the generator's defaults). Records say synthetic, so the leaderboard keeps them apart.
    synthetic: dict[str, int] | None = None
    # study | tuned: every cell under that protocol; both: the study's cells plus the tier's tuned_cells under
    # the tuned protocol as well; None: study. A tier runs exactly what was selected.
    protocol: str | None = None
    lr_grid: tuple[float, ...] | None = None  # the tuned protocol's learning rates (None: the tier's/strategy's)
    params: dict[str, Any] = field(default_factory=dict)  # strategy parameters (--param) over the tier's


def parse_splits(text: str) -> dict[str, int]:
    """``"train=4000,val=500,test=600"`` -> split sizes; ``""`` -> {} (defaults)."""
    out: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        if key not in ("train", "val", "test") or not (value.isascii() and value.isdigit()) or int(value) < 1:
            raise MedftError(f"--synthetic {text!r}: expected split sizes like train=4000,val=500,test=600 "
                             "(positive integers; splits train, val, test)")
        out[key] = int(value)
    return out


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MedftError(f"--shard {text!r}: expected i/n, e.g. 2/4 (the second of four shards)") from None
    if not 1 <= i <= n:
        raise MedftError(f"--shard {text!r}: i must be between 1 and n")
    return i, n


def in_shard(cell_id: str, shard: tuple[int, int] | None) -> bool:
    """Deterministic, stable under grid edits: a cell's shard depends only on its id."""
    if shard is None:
        return True
    i, n = shard
    return int(hashlib.sha256(cell_id.encode()).hexdigest(), 16) % n == i - 1


def build_grid(tier: Tier, opts: GridOptions | None = None, *, check: bool = True) -> list[CellConfig]:
    """The tier's cells under ``opts``; ``check=False`` skips :func:`check_cells` (counting, listing)."""
    from dataclasses import replace

    from medft_bench.data.folders import default_size
    from medft_bench.data.medmnist import flags
    from medft_bench.data.sources import dataset_names
    from medft_bench.errors import unknown
    from medft_bench.strategies.registry import get_strategy, strategy_names

    opts = opts or GridOptions()
    if opts.protocol != BOTH:
        check_protocol(opts.protocol)
    if opts.lr_grid and opts.protocol != "tuned":
        raise MedftError("--lr-grid applies to the tuned protocol only: add --protocol tuned")
    strategies = opts.strategies or list(tier.strategies or strategy_names())
    for s in strategies:
        get_strategy(s)  # unknown names fail here, listing the valid ones
    known = dataset_names()
    for d in opts.datasets or ():
        if d not in known:
            raise unknown("dataset", d, known)
    medmnist = set(flags())
    if opts.synthetic is not None:
        folder = [d for d in opts.datasets or tier.datasets if d not in medmnist]
        if folder:
            raise MedftError(f"--synthetic generates MedMNIST-format data only; {', '.join(folder)} "
                             "is a folder dataset: pick MedMNIST datasets with --datasets")
        splits = {**dict(tier.synthetic_splits), **opts.synthetic}
    cells = []
    for dataset in opts.datasets or tier.datasets:
        # A tier's sizes are MedMNIST's file sizes; a folder dataset runs at its images' own size unless given.
        sizes = opts.img_sizes or (tier.img_sizes if dataset in medmnist else [default_size(dataset)])
        for size in sizes:
            for backbone in opts.backbones or tier.backbones:
                subset = None if opts.strategies else tier.backbone_strategies.get(backbone)
                for strategy in (s for s in strategies if subset is None or s in subset):
                    if opts.protocol == BOTH:
                        protocols = ["study", *(["tuned"] if (backbone, strategy) in tier.tuned_cells else [])]
                    else:
                        protocols = [opts.protocol or "study"]
                    for seed in opts.seeds if opts.seeds is not None else tier.seeds:
                        for protocol in protocols:
                            cell = tier.cell(dataset, size, backbone, strategy, seed, opts.train, protocol)
                            if opts.weights:
                                cell = replace(cell, weights=opts.weights)
                            if opts.synthetic is not None:
                                cell = replace(cell, synthetic=True, synthetic_splits=tuple(sorted(splits.items())))
                            if opts.lr_grid:
                                cell = replace(cell, lr_grid=tuple(opts.lr_grid))
                            if opts.params:
                                cell = replace(cell, strategy_params=freeze_params({**cell.params(), **opts.params}))
                            cells.append(cell)
    if check:
        check_cells(cells)  # every shard's cells: a bad option fails on every machine alike
    return [c for c in cells if in_shard(c.cell_id, opts.shard)]


def check_cells(cells: list[CellConfig]) -> None:
    """Refuse bad input before any cell runs, with one :class:`MedftError` naming it: a number out of range, a
    MedMNIST image size without files, an unknown backbone, a ``--weights`` path that does not exist, or
    parameters a strategy does not have. Each distinct backbone and strategy is checked once."""
    from medft_bench.data.medmnist import check_size, flags
    from medft_bench.models.factory import check_backbone
    from medft_bench.strategies.registry import create_strategy

    medmnist = set(flags())
    seen: set[str] = set()

    def once(*key: Any) -> bool:
        text = repr(key)  # parameter values may be lists (JSON): not hashable
        new = text not in seen
        seen.add(text)
        return new

    for cell in cells:
        check_numbers(cell)
        if not cell.synthetic and cell.dataset in medmnist and once("size", cell.img_size):
            check_size(cell.img_size)
        if once("backbone", cell.backbone, cell.weights):
            check_backbone(cell.backbone, cell.weights)
        if once("strategy", cell.strategy, cell.strategy_params):
            try:
                create_strategy(cell.strategy, **cell.params())
            except (TypeError, ValueError) as exc:  # the strategy's own message names its valid parameters
                raise MedftError(f"bad strategy parameters (--param): {exc}") from None
