"""A folder dataset's images, labels and splits, read from its folders or its CSV manifest (nothing decoded).

Two layouts: ``folders``, split folders holding one folder per class (``<root>/train/<class>/*.png``,
``<root>/test/...``, optionally ``<root>/val/...``), or class folders directly under the root; ``csv``, a manifest
with a path column, a label column and optionally a split column and a group column.
"""

from __future__ import annotations

import csv
import errno
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medft_bench.data.folders.location import ignored, locate, visible_dirs
from medft_bench.data.folders.registration import get_spec
from medft_bench.data.folders.spec import FolderDatasetSpec
from medft_bench.data.folders.splitting import Item, assign_splits, check_class_coverage, check_class_names
from medft_bench.errors import DataError
from medft_bench.text import printable

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm"})


@dataclass(frozen=True)
class FolderScan:
    """A located, listed and split folder dataset."""

    spec: FolderDatasetSpec
    base: Path  # the folder that holds its files
    classes: tuple[str, ...]  # in label order
    pools: dict[str, list[Item]]  # split -> its images, sorted by file
    notes: dict[str, Any]  # what was inferred or carved, for the data's identity

    @property
    def n_files(self) -> int:
        return sum(len(p) for p in self.pools.values())


def scan(name: str, root: str | os.PathLike[str] | None = None) -> FolderScan:
    """Locate and validate a folder dataset without decoding anything: its folder, classes and split sizes."""
    spec = get_spec(name)
    base = locate(spec, root)
    items, classes, notes = (_scan_csv if spec.layout == "csv" else _scan_folders)(spec, base)
    _check_readable(items, classes)
    # The same class rules for both layouts: one spelling per class, and every class in train and in test.
    check_class_names(classes, str(base / spec.manifest) if spec.layout == "csv" else str(base))
    pools, split_notes = assign_splits(spec, items, base)
    check_class_coverage(pools, classes, base)
    return FolderScan(spec, base, tuple(classes), pools, {**notes, **split_notes})


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_readable(items: Sequence[Item], classes: Sequence[str]) -> None:
    """Refuse, naming the file and what to do, what failed later with a traceback: a name that is not UTF-8 (the
    split's hash, the cache and the record encode names), a dangling symlink or a symlink loop (nothing to read).
    The same policy as an image that cannot be decoded: the dataset is refused, never silently shrunk."""
    for cls in classes:
        if not _is_utf8(cls):
            raise DataError(f"class '{printable(cls)}': the name is not valid UTF-8; rename the class folder in "
                            "UTF-8 (e.g. convmv -f latin1 -t utf8)")
    for it in items:
        if not _is_utf8(str(it.path)):
            raise DataError(f"{printable(str(it.path))}: the file name is not valid UTF-8; rename it in UTF-8 "
                            "(e.g. convmv -f latin1 -t utf8)")
        try:
            it.path.stat()
        except OSError as exc:
            what = ("a symlink loop" if exc.errno == errno.ELOOP
                    else "a dangling symlink" if it.path.is_symlink() else "cannot be read")
            raise DataError(f"{it.path}: {what} ({exc.strerror}); fix the link or remove the file") from None


def _image_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not ignored(d))
        for f in sorted(filenames):
            if not ignored(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / f)
    return files


def _class_items(base: Path, folder: Path, classes: Sequence[str], split: str | None,
                 check_extra: bool) -> list[Item]:
    """The images of ``folder/<class>/``; with ``check_extra``, a folder that is not a class is an error (a
    misnamed class folder, or a split whose folders differ from train's when the classes are inferred)."""
    found = [d.name for d in visible_dirs(folder)]
    if check_extra:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(
                f"{folder}: unexpected folder(s) {extra}, not among the classes {list(classes)} "
                "(a misnamed class folder?)"
            )
    items: list[Item] = []
    for cls in classes:
        d = folder / cls
        if not d.is_dir():
            raise DataError(f"{folder}: class folder {cls!r} missing (found {found}); expected one folder per "
                            f"class: {list(classes)}")
        files = _image_files(d)
        if not files:
            raise DataError(f"{d}: no images in the class folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        items += [Item(f, cls, split, f.relative_to(base).as_posix()) for f in files]
    return items


def _find_split_dir(base: Path, names: Iterable[str]) -> Path | None:
    for n in names:
        if (base / n).is_dir():
            return base / n
    return None


def _scan_folders(spec: FolderDatasetSpec, base: Path) -> tuple[list[Item], tuple[str, ...], dict[str, Any]]:
    notes: dict[str, Any] = {}
    if spec.split_dirs is not None:
        dirs = {s: _find_split_dir(base, names) for s, names in spec.split_dirs.items()}
        if spec.flat_fallback and not any(dirs.values()):
            dirs = {}  # no split folders: class folders directly under the root
        else:
            for s in spec.required_splits():
                if dirs.get(s) is None:
                    raise DataError(
                        f"{base}: split folder {spec.split_dirs[s][0]!r} missing (found "
                        f"{[d.name for d in visible_dirs(base)]}); expected layout: {spec.layout_text(str(base))}"
                    )
    else:
        dirs = {}
    dirs = {s: d for s, d in dirs.items() if d is not None}
    if not dirs:
        classes = spec.classes or tuple(d.name for d in visible_dirs(base))
        if len(classes) < 2:
            raise DataError(f"{base}: found {len(classes)} class folder(s) {list(classes)}; need at least 2")
        return _class_items(base, base, classes, None, not spec.ignore_other_folders), classes, notes
    classes = spec.classes or tuple(d.name for d in visible_dirs(dirs["train"]))
    if len(classes) < 2:
        raise DataError(f"{dirs['train']}: found {len(classes)} class folder(s) {list(classes)}; need at least 2")
    notes["split_dirs"] = {s: d.name for s, d in dirs.items()}
    items: list[Item] = []
    for s, d in dirs.items():
        split: str | None = s
        if s == "val" and spec.merge_val_into_train:
            split = None  # merged into the train pool below
            notes["val_dir_merged_into_train"] = True
        items += _class_items(base, d, classes, split, not spec.ignore_other_folders)
    for it in items:
        if it.split is None:
            it.split = "train"
    return items, classes, notes


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})") from None
    rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in rows]
    return columns, rows


def _scan_csv(spec: FolderDatasetSpec, base: Path) -> tuple[list[Item], tuple[str, ...], dict[str, Any]]:
    manifest = base / spec.manifest
    columns, rows = _read_manifest(manifest)
    for col in (spec.path_column, spec.label_column):
        if col not in columns:
            raise DataError(f"{manifest}: no {col!r} column; the columns are {columns} "
                            f"(expected layout: {spec.layout_text(str(base))})")
    if not rows:
        raise DataError(f"{manifest}: the manifest has no rows")
    split_col = spec.split_column if spec.split_column in columns else None
    group_col = spec.group_column if spec.group_column in columns else None
    labels_seen = sorted({r[spec.label_column] for r in rows if r[spec.label_column]})
    classes = spec.classes or tuple(labels_seen)
    known = set(classes)
    by_stem: dict[str, Path] = {}
    if spec.find_by_stem:
        for f in _image_files(base):
            by_stem.setdefault(f.stem, f)
    items: list[Item] = []
    seen: dict[Path, int] = {}
    for i, r in enumerate(rows, start=1):
        row = f"manifest row {i} (line {i + 1})"
        where = f"{manifest}: {row}"
        ref, label = r.get(spec.path_column, ""), r.get(spec.label_column, "")
        if not ref:
            raise DataError(f"{where}: empty {spec.path_column!r}")
        if label not in known:
            raise DataError(f"{manifest}: unknown label {label!r} in {row}; known labels: {list(classes)}")
        if spec.find_by_stem:
            path = by_stem.get(Path(ref).stem)
            if path is None:
                raise DataError(f"{where}: no image file for {spec.path_column} {ref!r} under {base}")
        else:
            # Normalised first: a manifest row may not name a file outside the dataset's root ("..", an
            # absolute path). Links placed inside the root by its owner are followed like any folder.
            rel = os.path.normpath(ref)
            if os.path.isabs(rel) or rel == os.pardir or rel.startswith(os.pardir + os.sep):
                raise DataError(f"{where}: {spec.path_column!r} {ref!r} points outside the dataset root {base}; "
                                f"give paths relative to {base} that stay inside it")
            path = base / rel
            if not path.is_file():
                raise DataError(f"{where}: image file {ref!r} not found (looked for {path})")
        if path in seen:
            raise DataError(f"{where}: {ref!r} is listed twice (first in row {seen[path]})")
        seen[path] = i
        split = None
        if split_col is not None and r.get(split_col, ""):
            split = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                     "test": "test"}.get(r[split_col].lower())
            if split is None:
                raise DataError(f"{where}: unknown split {r[split_col]!r}; use train, val or test (or leave it empty)")
        group = r.get(group_col, "") if group_col else ""
        items.append(Item(path, label, split, f"group:{group}" if group else path.relative_to(base).as_posix()))
    if split_col is not None and any(it.split is None for it in items) and any(it.split for it in items):
        # Partly assigned: rows without a split join train.
        for it in items:
            if it.split is None:
                it.split = "train"
    return items, classes, {"manifest": spec.manifest}
