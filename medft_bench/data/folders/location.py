"""Where a folder dataset's files are: its registered folder, or ``<data root>/<name>`` (also inside the one
folder an archive unpacked into); when they are nowhere, an error that says where to get them and put them."""

from __future__ import annotations

import os
from pathlib import Path

from medft_bench.data.folders.spec import FolderDatasetSpec
from medft_bench.errors import DatasetNotFoundError

ROOT_ENV = "MEDFT_DATA_ROOT"
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})


def ignored(name: str) -> bool:
    """Hidden files and folders, and the clutter archives and file browsers leave."""
    return name.startswith(".") or name in IGNORED_NAMES


def visible_dirs(path: Path) -> list[Path]:
    """The sub-folders of ``path`` that are not :func:`ignored`, sorted (none when it cannot be listed)."""
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not ignored(p.name))
    except OSError:
        return []


def _looks_like(spec: FolderDatasetSpec, path: Path) -> bool:
    if not path.is_dir():
        return False
    if spec.layout == "csv":
        return (path / spec.manifest).is_file()
    if spec.split_dirs is not None:
        if any((path / n).is_dir() for names in spec.split_dirs.values() for n in names):
            return True
        if not spec.flat_fallback:
            return False
    if spec.classes is None:
        return bool(visible_dirs(path))
    return any((path / c).is_dir() for c in spec.classes)


def _unwrap(spec: FolderDatasetSpec, path: Path) -> Path | None:
    """``path`` or the folder an archive unpacked into (one lone sub-folder, two levels at most)."""
    for _ in range(3):
        if _looks_like(spec, path):
            return path
        subdirs = visible_dirs(path)
        if len(subdirs) != 1:
            return None
        path = subdirs[0]
    return None


def candidate_roots(spec: FolderDatasetSpec, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where ``spec`` is looked for, in order.

    A user-registered dataset lives where it was registered. A built-in one lives in ``<root>/<name>`` or in
    ``root`` itself when ``root`` is given (a data root holding several datasets, or the dataset's own folder),
    else in ``$MEDFT_DATA_ROOT/<name>``.
    """
    if spec.root is not None:
        return [spec.root]
    if root is not None:
        r = Path(root).expanduser()
        return [r / spec.name, r]
    if os.environ.get(ROOT_ENV):
        return [Path(os.environ[ROOT_ENV]).expanduser() / spec.name]
    return []


def _not_found(spec: FolderDatasetSpec, candidates: list[Path]) -> DatasetNotFoundError:
    where = str(candidates[0]) if candidates else f"${ROOT_ENV}/{spec.name}"
    if candidates:
        looked = " or ".join(str(c) for c in candidates)
        head = f"Folder dataset {spec.name!r} ({spec.title}) was not found at {looked}."
    else:
        head = (f"Folder dataset {spec.name!r} ({spec.title}) has no location: pass --data-root (a folder "
                f"holding {spec.name}/) or set ${ROOT_ENV}.")
    cite = f" (cite: {spec.citation}; licence: {spec.licence})" if spec.citation else ""
    todo = f" To install: {spec.instructions}" if spec.instructions else ""
    return DatasetNotFoundError(
        f"{head} Get it from {spec.source}{cite}.{todo} Expected layout: {spec.layout_text(where)}. "
        f"Place it at {where}."
    )


def locate(spec: FolderDatasetSpec, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds ``spec``'s files, or :class:`DatasetNotFoundError` with instructions."""
    candidates = candidate_roots(spec, root)
    for c in candidates:
        found = _unwrap(spec, c)
        if found is not None:
            return found
    raise _not_found(spec, candidates)
