"""Images as memory-mapped arrays: each split converted once from its npz into an uncompressed ``.npy``.

A MedMNIST npz (or a folder dataset's decoded cache) is a zip of ``.npy`` members, usually compressed: reading
it means holding every image in memory. So the images of each split are copied once, member by member and in
bounded memory, into ``<file>.arrays/<split>_images.npy`` next to the source (under ``cache_dir()/arrays`` when
the source's folder is read-only), stored as the source's own (N, H, W[, 3]) uint8, and opened with
``numpy.load(..., mmap_mode="r")``. Batches then read only the images they need (see ``Split.gather``), and
every process on a host that maps the same file shares one copy of it in the operating system's page cache
(pytest-xdist workers, the cluster runners' tasks): host memory no longer grows with the dataset or with the
number of workers.

A conversion is atomic (temporary file, fsync, rename), keyed by the source's MD5 or fingerprint and written
with a manifest (``manifest.json``: the key, and each file's shape, dtype, size and mtime). On reuse the
manifest, the key, every file's size and mtime and every header are checked; anything that does not match (a
truncated or replaced file, a changed source) is converted again. Concurrent converters are serialised by a
lock file, so workers starting together convert once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import mmap
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medft_bench.cache import cache_dir, cache_write_error
from medft_bench.errors import WRITE_ERRNOS, WriteError, cannot_write
from medft_bench.io import atomic_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUFFIX = ".arrays"
# Images smaller than this (per file, all splits) are read into memory instead: the smoke and quick tiers'
# files, where a conversion would only add files and a few fsyncs (see docs/performance.md).
MIN_BYTES = 64 << 20
COPY_CHUNK = 16 << 20


def arrays_dir(source: Path) -> Path:
    """Where ``source``'s converted arrays live: next to it, or under ``cache_dir()/arrays`` when its folder is
    not writable (a shared, read-only data root)."""
    here = source.with_name(source.name + SUFFIX)
    if here.is_dir() or os.access(source.parent, os.W_OK):
        return here
    tag = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_dir() / "arrays" / f"{source.name}-{tag}{SUFFIX}"


def open_converted(npz: Any, source: Path, names: list[str], key: str,
                   expect: dict[str, tuple[tuple[int, ...], np.dtype]]) -> tuple[dict[str, np.ndarray], float]:
    """Memory maps of the members ``names`` of the open :class:`numpy.lib.npyio.NpzFile` ``npz`` (read from
    ``source``), converting them first when there is no valid conversion for ``key``.

    ``expect`` is each member's (shape, dtype) from the npz's headers. Returns the maps and the seconds spent
    converting (0 when an earlier conversion was reused).
    """
    folder = arrays_dir(source)
    maps = _open_valid(folder, names, key, expect)
    if maps is not None:
        return maps, 0.0
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            maps = _open_valid(folder, names, key, expect)  # converted by another process meanwhile
            if maps is not None:
                return maps, 0.0
            t0 = time.perf_counter()
            _convert(npz, source, folder, names, key)
            seconds = time.perf_counter() - t0
        maps = _open_valid(folder, names, key, expect)
    except BaseException as exc:
        if created:  # a source that fails to convert leaves nothing behind
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:  # a full or read-only folder, not a bad source
            raise _write_error(source, folder, exc) from None
        raise
    if maps is None:
        raise OSError(f"{folder}: the arrays converted from {source} do not verify after writing them")
    return maps, seconds


def _write_error(source: Path, folder: Path, exc: OSError) -> WriteError:
    what = f"the memory-mappable arrays of {source.name} into"
    if folder.is_relative_to(cache_dir()):
        return cache_write_error(what, folder, exc)
    return cannot_write(what, folder, exc, f"move the data root (--data-root) holding {source.name} to a disk "
                        "with free space")


def _convert(npz: Any, source: Path, folder: Path, names: list[str], key: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (folder / MANIFEST).unlink()  # no manifest while the files change: a crash leaves an invalid conversion
    log.info("converting %s into memory-mappable arrays in %s", source, folder)
    files: dict[str, Any] = {}
    for name in names:
        path = folder / f"{name}.npy"
        # The member is itself a .npy file: a byte-for-byte copy, streamed, its CRC checked by zipfile at the end.
        with atomic_path(path) as tmp, npz.zip.open(f"{name}.npy") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        files[name] = _stamp(path)
    manifest = {"format": FORMAT_VERSION, "source": source.name, "key": key, "files": files}
    with atomic_path(folder / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _open_valid(folder: Path, names: list[str], key: str,
                expect: dict[str, tuple[tuple[int, ...], np.dtype]]) -> dict[str, np.ndarray] | None:
    """The members' memory maps when ``folder`` holds a complete conversion for ``key``, else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION or manifest.get("key") != key:
        return None
    maps: dict[str, np.ndarray] = {}
    for name in names:
        path = folder / f"{name}.npy"
        try:
            if _stamp(path) != manifest["files"][name]:
                raise ValueError("size or mtime differs from the manifest's")
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            shape, dtype = expect[name]
            if arr.shape != tuple(shape) or arr.dtype != dtype:
                raise ValueError(f"holds {arr.dtype} {arr.shape}, the source {dtype} {tuple(shape)}")
            if arr.offset + arr.nbytes != path.stat().st_size:
                raise ValueError("has bytes after its data")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: %s; converting it again", path, exc)
            return None
        maps[name] = arr
    return maps


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # no advisory locks here: concurrent converters each write, the last rename wins
        yield
        return
    with open(folder / ".lock", "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def remove_converted(source: Path) -> None:
    """Delete ``source``'s converted arrays (for example with a stale cache file they came from)."""
    shutil.rmtree(source.with_name(source.name + SUFFIX), ignore_errors=True)


def mapping_of(arr: np.ndarray) -> mmap.mmap | None:
    """The memory map under ``arr`` (a ``numpy.load(..., mmap_mode=...)`` array or a view of one), if any."""
    base = arr
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base
