"""Train / val / test for a folder dataset: the splits on disk are kept, a missing one is carved deterministically,
stratified by class and by group (so that the images of one patient or lesion never straddle splits).

Carving orders the groups of each class by a hash of their names, so it does not depend on the file system's
listing order: val from train (``val_fraction``), and test from everything (``test_fraction``) when there is
no test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft_bench.data.arrays import SPLITS
from medft_bench.data.folders.spec import FolderDatasetSpec
from medft_bench.errors import DataError


@dataclass
class Item:
    """One image: its file, its class, the split the dataset gives it and the group it is carved with."""

    path: Path
    label: str
    split: str | None  # None: to be carved
    group: str


def _rank(name: str, key: str) -> str:
    return hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()


def _carve(items: list[Item], fraction: float, dataset: str, purpose: str) -> tuple[list[Item], list[Item]]:
    """Split ``items`` into (kept, carved): ``fraction`` of each class's groups, chosen by hash order."""
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    by_class: dict[str, list[str]] = {}
    for g, members in groups.items():
        by_class.setdefault(members[0].label, []).append(g)
    carved_groups: set[str] = set()
    for _cls, gs in sorted(by_class.items()):
        gs.sort(key=lambda g: _rank(dataset + purpose, g))
        n = int(round(fraction * len(gs)))
        if len(gs) >= 2:
            n = min(max(n, 1), len(gs) - 1)  # at least one each side when the class allows it
        else:
            n = 0
        carved_groups.update(gs[:n])
    kept = [it for it in items if it.group not in carved_groups]
    carved = [it for it in items if it.group in carved_groups]
    return kept, carved


def check_class_coverage(pools: dict[str, list[Item]], classes: tuple[str, ...] | list[str], base: Path) -> None:
    """Every class needs an image in train and one in test, whichever layout listed them: a class the model never
    trains on (only in test), or one that test lacks (a single image, a stray label), would leave balanced
    accuracy taken over the classes present (1.0 on a "3-class" task). Split folders enforce it by their
    folders (a class folder missing or extra in a split is refused); a manifest or carving, here."""
    counts = {s: {c: 0 for c in classes} for s in SPLITS}
    for s in SPLITS:
        for it in pools[s]:
            counts[s][it.label] += 1
    for c in classes:
        if counts["train"][c] == 0 or counts["test"][c] == 0:
            shown = ", ".join(f"{counts[s][c]} {s}" for s in SPLITS)
            raise DataError(f"{base}: class {c!r} has {shown} image(s); every class needs at least one training and "
                            "one test image (at least 2 images): add images, fix its label, or leave it out "
                            "with classes=...")


def check_class_names(classes: tuple[str, ...] | list[str], where: str) -> None:
    """Refuse class names that differ only in case (``Benign``, ``benign``): one class typed two ways, which
    would silently become two classes."""
    seen: dict[str, str] = {}
    for c in classes:
        other = seen.setdefault(c.casefold(), c)
        if other != c:
            raise DataError(f"{where}: classes {other!r} and {c!r} differ only in case; use one spelling (they "
                            "would count as two classes)")


def assign_splits(spec: FolderDatasetSpec, items: list[Item], base: Path) -> tuple[dict[str, list[Item]],
                                                                                 dict[str, Any]]:
    """The three splits' items, each sorted by file, and notes on what was carved; an empty split or a group
    in two splits is an error."""
    notes: dict[str, Any] = {}
    pools = {s: [it for it in items if it.split == s] for s in SPLITS}
    unassigned = [it for it in items if it.split is None]
    if not pools["test"]:
        rest, pools["test"] = _carve(unassigned + pools["train"], spec.test_fraction, spec.name, "test")
        pools["train"], unassigned = rest, []
        notes["test_carved"] = spec.test_fraction
    pools["train"] += unassigned
    if not pools["val"]:
        pools["train"], pools["val"] = _carve(pools["train"], spec.val_fraction, spec.name, "val")
        notes["val_carved"] = spec.val_fraction
    for s in SPLITS:
        if not pools[s]:
            raise DataError(f"{base}: the {s} split is empty ({len(items)} images in all: too few to carve it)")
        pools[s].sort(key=lambda it: it.path.relative_to(base).as_posix())
    groups = {s: {it.group for it in pools[s]} for s in SPLITS}
    if groups["train"] & groups["test"] or groups["train"] & groups["val"] or groups["val"] & groups["test"]:
        shared = sorted((groups["train"] & groups["test"]) | (groups["train"] & groups["val"]))[:3]
        raise DataError(f"{base}: group(s) {shared} appear in more than one split; a group must stay in one split")
    return pools, notes
