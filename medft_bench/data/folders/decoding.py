"""Decoding a folder dataset's images, and the decoded cache.

Every image is decoded once with PIL (converted to grey or RGB, optionally centre-cropped to a square, resized
with bicubic filtering to the requested size) and the uint8 arrays are cached as a MedMNIST-format npz under
``cache_dir()/folders/``, keyed by dataset name, size and a fingerprint of the file list (names, sizes, mtimes,
labels, splits) and of the loading settings. Later loads read the cache; any change to the files rebuilds it.
A large cache's images are then converted once into memory-mappable arrays next to it
(:mod:`medft_bench.data.mapped`), removed with the cache they came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from medft_bench.cache import cache_dir, cache_write_error
from medft_bench.data import mapped
from medft_bench.data.arrays import SPLITS
from medft_bench.data.folders.scanning import FolderScan
from medft_bench.errors import DataError
from medft_bench.io import atomic_path

log = logging.getLogger(__name__)

LOADER_VERSION = 1


def _decode_image(path: Path, size: int, channels: int, crop: str) -> np.ndarray:
    """One image as uint8 (size, size) or (size, size, 3)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("L" if channels == 1 else "RGB", (size, size))  # decode at a reduced scale when possible
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            arr = np.asarray(im, dtype=np.float64)  # high bit depth: scale its own range to 0..255
            if arr.ndim == 3:
                arr = arr.mean(-1)
            if not np.isfinite(arr).all():  # one NaN would make the range NaN and the whole image black
                bad = int((~np.isfinite(arr)).sum())
                raise DataError(f"{path}: {bad} of {arr.size} pixels are NaN or infinite; a float image must be "
                                "finite: fix or remove the file")
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            img = Image.fromarray(arr.round().astype(np.uint8))
        else:
            img = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "LA") else im
        img = img.convert("L" if channels == 1 else "RGB")
        if crop == "center":
            w, h = img.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(img, dtype=np.uint8)


def _decode_checked(path: Path, size: int, channels: int, crop: str) -> np.ndarray:
    try:
        arr = _decode_image(path, size, channels, crop)
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        raise DataError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None
    want = (size, size) if channels == 1 else (size, size, 3)
    if arr.shape != want or arr.dtype != np.uint8:
        raise DataError(f"{path}: decoded to {arr.dtype} {arr.shape}, expected uint8 {want}")
    return arr


def decode_all(paths: list[Path], size: int, channels: int, crop: str) -> np.ndarray:
    """The images at ``paths`` as one uint8 array, decoded by up to eight threads."""
    shape = (len(paths), size, size) if channels == 1 else (len(paths), size, size, 3)
    try:
        out = np.empty(shape, dtype=np.uint8)
    except (MemoryError, ValueError):  # numpy: "array is too big"
        gib = np.prod(shape, dtype=np.float64) / 2**30
        raise DataError(f"{len(paths)} images at {size} px need {gib:,.0f} GiB decoded: "
                        "use a smaller --img-size") from None
    workers = max(1, min(8, os.cpu_count() or 1))

    def one(i: int) -> None:
        out[i] = _decode_checked(paths[i], size, channels, crop)

    if workers == 1 or len(paths) < 64:
        for i in range(len(paths)):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(paths))))
    return out


def cache_root() -> Path:
    """Where the decoded caches live."""
    return cache_dir() / "folders"


def fingerprint(found: FolderScan) -> str:
    """The dataset's fingerprint (file list with sizes and mtimes, labels, splits, loading settings), without
    decoding anything: what its cache and its records' reuse are keyed on."""
    spec = found.spec
    h = hashlib.sha256()
    settings = {"loader": LOADER_VERSION, "classes": list(found.classes), "channels": spec.channels,
                "crop": spec.crop, "task": spec.task}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for s in SPLITS:
        for it in found.pools[s]:
            st = it.path.stat()
            rel = it.path.relative_to(found.base).as_posix()
            h.update(f"{s}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{it.label}\n".encode())
    return h.hexdigest()


def content_md5(arrays: dict[str, np.ndarray]) -> str:
    """Of the decoded arrays and file lists: the same on every machine for the same files."""
    h = hashlib.md5()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\n".encode())
        h.update(a.tobytes() if a.dtype.kind == "U" else memoryview(a).cast("B"))
    return h.hexdigest()


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache at ``path``, then remove this dataset's older caches at the same size and their
    memory-mappable conversions."""
    with atomic_path(path, durable=False) as tmp:  # a decoded cache, fingerprinted by its name
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    prefix = path.name.rsplit("_", 1)[0]
    same = re.compile(re.escape(prefix) + r"_[0-9a-f]{20}\.npz")
    for stale in path.parent.glob(f"{prefix}_*.npz"):
        if stale != path and same.fullmatch(stale.name):  # an older cache of this dataset and size
            with contextlib.suppress(OSError):
                stale.unlink()
            mapped.remove_converted(stale)
    mapped.remove_converted(path)  # converted from the file this one replaces


def read_meta(path: Path) -> dict[str, Any] | None:
    """The cache's metadata, or None when it cannot be read (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return json.loads(str(npz["meta"][()]))
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt
        return None


def decoded_cache(found: FolderScan, size: int, fp: str) -> tuple[Path, dict[str, Any]]:
    """The cache of ``found``'s images at ``size`` px (fingerprint ``fp``) and its metadata: read when it is
    there and current, else decoded and written."""
    spec = found.spec
    cache = cache_root() / f"{spec.name}_{size}px_{fp[:20]}.npz"
    meta = read_meta(cache) if cache.is_file() else None
    if meta is not None and meta.get("fingerprint") == fp:
        return cache, meta
    log.info("decoding %d images of %s at %d px into %s", found.n_files, spec.name, size, cache)
    index = {c: i for i, c in enumerate(found.classes)}
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        items = found.pools[split]
        arrays[f"{split}_images"] = decode_all([it.path for it in items], size, spec.channels, spec.crop)
        arrays[f"{split}_labels"] = np.array([[index[it.label]] for it in items], dtype=np.int64)
        arrays[f"{split}_files"] = np.array([it.path.relative_to(found.base).as_posix() for it in items])
    meta = {"fingerprint": fp, "dataset": spec.name, "size": size, "classes": list(found.classes),
            "content_md5": content_md5(arrays), "loader_version": LOADER_VERSION}
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    try:
        write_cache(cache, arrays)
    except OSError as exc:  # a read-only or full cache: one line naming it (the images are decoded again next time)
        raise cache_write_error(f"the decoded images of {spec.name} at {size} px", cache, exc) from None
    return cache, meta
