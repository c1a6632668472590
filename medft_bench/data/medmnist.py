"""MedMNIST files: find them, download them atomically, verify their MD5 once, and load them.

Facts about each dataset (task, labels, channels, URLs, MD5s) come from ``medmnist.INFO``; nothing is
copied here. The arrays are read straight from the npz (see :mod:`medft_bench.data.arrays`) rather than
through medmnist's per-sample PIL ``Dataset``, which also rejects files of non-official length; a large file's
images are converted once into memory-mappable arrays next to it (:mod:`medft_bench.data.mapped`).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import math
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medft_bench.data.arrays import DataBundle, open_npz
from medft_bench.errors import WRITE_ERRNOS, DataError, DatasetNotFoundError, UnknownNameError, unknown, write_cause
from medft_bench.io import atomic_path, atomic_write
from medft_bench.vocabulary import MODALITY

SIZES = (28, 64, 128, 224)
ROOT_ENV = "MEDFT_DATA_ROOT"
VERIFIED_CACHE = ".medft_verified.json"
# The official files medft-bench ships (CC BY 4.0, see bundled/ATTRIBUTION.md): found when the data root lacks them,
# unless $MEDFT_NO_BUNDLED is 1 (the unit tests set it: they test what a data root alone gives).
BUNDLED_DIR = Path(__file__).parent / "bundled"
NO_BUNDLED_ENV = "MEDFT_NO_BUNDLED"
DOWNLOAD_TIMEOUT_S = 20.0  # idle: a download that receives no byte for this long ends
# The whole download's deadline: $MEDFT_DOWNLOAD_DEADLINE seconds, else 10 minutes plus a second per MiB the server
# announces (a floor of 1 MiB/s: the largest file, ~8 GB at 224 px, gets about 2.4 hours), so that a server that
# trickles a byte now and then (never idle that long) cannot hold a run forever.
DEADLINE_ENV = "MEDFT_DOWNLOAD_DEADLINE"
DEADLINE_BASE_S = 600.0
DEADLINE_RATE = 1 << 20
URL_ENV = "MEDFT_MEDMNIST_URL"  # a mirror: a folder URL (http(s), file) holding the official file names
CHUNK = 1 << 16

class UnknownDatasetError(DataError, UnknownNameError):
    """An unknown MedMNIST flag: a :class:`DataError` that is also an :class:`UnknownNameError`."""


def _info_table() -> dict[str, dict[str, Any]]:
    from medmnist import INFO  # imported lazily: importing medmnist creates ~/.medmnist

    return INFO


def flags() -> list[str]:
    """The twelve 2D MedMNIST flags (3D volumes are not image classification in 2D)."""
    return [f for f in _info_table() if not f.endswith("3d")]


def info(flag: str) -> dict[str, Any]:
    """``medmnist.INFO[flag]``, with a clear error for an unknown flag."""
    if flag not in flags():
        raise UnknownDatasetError(*unknown("MedMNIST dataset", flag, flags()).args)
    return _info_table()[flag]


def n_labels(flag: str) -> int:
    return len(info(flag)["label"])


def check_size(size: int) -> None:
    if size not in SIZES:
        raise DataError(f"MedMNIST has no {size} px files; available sizes: {', '.join(map(str, SIZES))}")


def file_name(flag: str, size: int, *, official: bool = True) -> str:
    """``<flag>.npz`` at 28 px, else ``<flag>_<size>.npz``; ``official=False`` allows any size (synthetic)."""
    if official:
        check_size(size)
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def url_and_md5(flag: str, size: int) -> tuple[str, str]:
    meta = info(flag)
    check_size(size)
    suffix = "" if size == 28 else f"_{size}"
    return meta[f"url{suffix}"], meta[f"MD5{suffix}"]


def mirror_url(flag: str, size: int, mirror: str | None = None) -> str | None:
    """The file's URL on a mirror: ``mirror`` (``--medmnist-url``), else ``$MEDFT_MEDMNIST_URL``, a folder URL
    followed by the official file name (``<flag>.npz``, ``<flag>_<size>.npz``); None without a mirror."""
    base = mirror or os.environ.get(URL_ENV)
    return f"{base.rstrip('/')}/{file_name(flag, size)}" if base else None


def download_deadline(length: int | None) -> float:
    """Seconds a whole download may take (``length``: the bytes the server announces, if it does)."""
    text = os.environ.get(DEADLINE_ENV)
    if text:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise DataError(f"${DEADLINE_ENV}={text!r}: expected a number of seconds > 0")
        return value
    return DEADLINE_BASE_S + (length or 0) / DEADLINE_RATE


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The data root: the argument, else ``$MEDFT_DATA_ROOT``, else medmnist's default root."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser()
    from medmnist.info import DEFAULT_ROOT

    return Path(DEFAULT_ROOT).expanduser()


def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_cache(root: Path) -> dict[str, Any]:
    try:
        return json.loads((root / VERIFIED_CACHE).read_text())
    except (OSError, ValueError):
        return {}


_MD5_SEEN: dict[tuple[str, int, int], str] = {}


def file_md5(path: Path) -> str:
    """The MD5 of ``path``, hashed only when the file is new or changed since it was last hashed.

    Hashes are remembered in ``.medft_verified.json`` next to the file, keyed by name, size and mtime, so a
    multi-GB 224 px file is not re-hashed on every run, and in this process as well, so that a read-only data
    root does not cost a hash per cell (the runner asks for the MD5 of every cell's file).
    """
    stamp = _stamp(path)
    seen = (str(path.resolve()), stamp["size"], stamp["mtime_ns"])
    if seen in _MD5_SEEN:
        return _MD5_SEEN[seen]
    cache = _read_cache(path.parent)
    entry = cache.get(path.name)
    if entry and "md5" in entry and all(entry.get(k) == v for k, v in stamp.items()):
        digest = entry["md5"]
    else:
        digest = md5sum(path)
        _remember(path, digest, cache)
    _MD5_SEEN[seen] = digest
    return digest


def _remember(path: Path, digest: str, cache: dict[str, Any] | None = None) -> None:
    """Record ``path``'s MD5 under its current size and mtime (not for the bundled files: the package's folder
    is not written to; they are small, hashed once a process)."""
    if is_bundled(path):
        return
    cache = _read_cache(path.parent) if cache is None else cache
    cache[path.name] = {"md5": digest, **_stamp(path)}
    with contextlib.suppress(OSError):  # a read-only root only costs a re-hash next time
        atomic_write(path.parent / VERIFIED_CACHE, json.dumps(cache, indent=1, sort_keys=True), durable=False)


class DownloadError(Exception):
    """A download that did not give the official file: its message says why, in words."""


@dataclass
class _Transfer:
    """What the thread that streams a download shares with the one that waits for it."""

    length: int | None = None
    got: int = 0
    digest: str | None = None
    error: BaseException | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


def download(url: str, dest: Path, md5: str, *, timeout: float = DOWNLOAD_TIMEOUT_S,
             deadline: float | None = None) -> None:
    """Fetch ``url`` into ``dest`` atomically: stream to a temporary file, check the MD5, then rename; any failure
    leaves neither ``dest`` nor the temporary file. ``timeout``: the most seconds without a byte; ``deadline``: the
    most seconds for the whole (default :func:`download_deadline`)."""
    with atomic_path(dest, suffix=".part") as tmp:
        digest = _fetch(url, tmp, timeout, deadline)
        if digest != md5:
            raise DownloadError(f"MD5 mismatch: the server sent a file with MD5 {digest}, not the official {md5}")
    _remember(dest, digest)  # hashed while streaming: the next load does not re-hash


def _fetch(url: str, tmp: Path, idle: float, deadline: float | None) -> str:
    """Stream ``url`` into the existing file ``tmp`` in a thread of its own, so that the deadline holds whatever the
    network does (a socket timeout bounds one read, not a trickle, a slow name lookup or slow headers); the MD5."""
    t = _Transfer()
    worker = threading.Thread(target=_stream, args=(url, tmp, idle, t), name="medft-download", daemon=True)
    start = time.monotonic()
    worker.start()
    while worker.is_alive():
        limit = deadline if deadline is not None else download_deadline(t.length)
        left = start + limit - time.monotonic()
        if left <= 0:
            # The thread stops at its next read (within `idle`); it writes to no file by then (removed by the caller).
            t.cancel.set()
            of = f" of {t.length:,}" if t.length is not None else ""
            raise DownloadError(f"not complete after {limit:g} s ({t.got:,}{of} bytes received): the server is too "
                                f"slow; set ${DEADLINE_ENV} to the seconds to allow")
        worker.join(min(left, 0.25))
    if t.error is not None:
        raise t.error
    assert t.digest is not None
    return t.digest


def _stream(url: str, tmp: Path, idle: float, t: _Transfer) -> None:
    h = hashlib.md5()
    try:
        # "r+b": the file exists (the caller made it); once the caller has given up and removed it, nothing recreates it
        with urllib.request.urlopen(url, timeout=idle) as resp, open(tmp, "r+b") as out:
            length = resp.headers.get("Content-Length")
            t.length = int(length) if length and length.isdigit() else None
            read = getattr(resp, "read1", resp.read)  # read1: what has arrived, so the deadline is checked often
            while not t.cancel.is_set() and (block := read(CHUNK)):
                out.write(block)
                h.update(block)
                t.got += len(block)
        if t.length is not None and t.got != t.length and not t.cancel.is_set():
            raise DownloadError(f"transfer interrupted: {t.got:,} of {t.length:,} bytes")
        t.digest = h.hexdigest()
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, which raises it
        t.error = exc


def _why(exc: BaseException, root: Path, idle: float) -> str:
    """A failed download's cause, in words."""
    if isinstance(exc, DownloadError):
        return str(exc)
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        return f"transfer interrupted: {len(exc.partial):,} bytes, {exc.expected:,} more expected"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
        if not isinstance(exc, TimeoutError):
            return f"cannot reach the server ({getattr(exc, 'strerror', None) or exc})"
    if isinstance(exc, TimeoutError):
        return f"no data for {idle:g} s"
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        return (f"cannot write into the data root {root} ({write_cause(exc)}): point --data-root / ${ROOT_ENV} at a "
                "writable folder with free space")
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, OSError) else str(exc)


def is_bundled(path: Path) -> bool:
    return path.parent.resolve() == BUNDLED_DIR.resolve()


def bundled_file(flag: str, size: int) -> Path | None:
    """The official copy of ``flag`` at ``size`` px that ships with medft-bench, or None. Its MD5 is checked
    like a download's: a copy that does not match is an error (a damaged install), never used."""
    path = BUNDLED_DIR / file_name(flag, size)
    if os.environ.get(NO_BUNDLED_ENV) == "1" or not path.is_file():
        return None
    _, md5 = url_and_md5(flag, size)
    digest = file_md5(path)
    if digest != md5:
        raise DataError(f"the bundled {path} has MD5 {digest}, not the official {md5}: the installation "
                        "is damaged; reinstall medft-bench (or place the official file under --data-root)")
    return path


def _not_found(flag: str, size: int, path: Path, url: str, md5: str, why: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"MedMNIST {flag} at {size} px is not available ({why}). Download {url} (MD5 {md5}) and place it "
        f"at {path}, or point --data-root / ${ROOT_ENV} at the folder that holds {path.name}, or --medmnist-url / "
        f"${URL_ENV} at a mirror."
    )


# A file whose download failed in this process, by (path, URL): the first attempt's reason. Later cells that need it
# skip with that reason instead of trying again (3 cells were 68 s; a quick tier's 270 cells, 100 minutes). Per
# process, not shared through the cache: a pytest-xdist worker or cluster task tries once itself, so that one
# worker's passing failure never skips another's cells and nothing stale outlives the run.
_FAILED: dict[tuple[str, str], str] = {}


def ensure_file(
    flag: str,
    size: int = 28,
    root: str | os.PathLike[str] | None = None,
    *,
    download_missing: bool = True,
    url: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    mirror: str | None = None,
) -> tuple[Path, bool]:
    """The path of ``flag`` at ``size`` px under the data root; else the bundled official copy (pneumoniamnist
    and breastmnist at 28 px); else downloaded, if allowed: from ``url``, else the mirror (:func:`mirror_url`),
    else Zenodo; once a process (a failed download is not tried again: :data:`_FAILED`).

    Returns the path and whether its MD5 matches the official one. A file with another MD5 (for example a
    synthetic file in MedMNIST format) is still returned, flagged as unverified, so it is never overwritten.
    """
    off_url, md5 = url_and_md5(flag, size)
    url = url or mirror_url(flag, size, mirror) or off_url
    path = resolve_root(root) / file_name(flag, size)
    if path.is_file():
        return path, file_md5(path) == md5
    bundled = bundled_file(flag, size)
    if bundled is not None:
        return bundled, True
    if not download_missing or os.environ.get("MEDFT_OFFLINE") == "1":
        raise _not_found(flag, size, path, url, md5, "the file is missing and downloading is off")
    tried = (str(path), url)
    if tried in _FAILED:
        raise _not_found(flag, size, path, url, md5, f"download failed earlier in this run, not tried again: "
                                                     f"{_FAILED[tried]}")
    try:
        download(url, path, md5, timeout=timeout)
    except (DownloadError, http.client.HTTPException, OSError, ValueError) as exc:  # URLError is an OSError
        _FAILED[tried] = _why(exc, path.parent, timeout)
        raise _not_found(flag, size, path, url, md5, f"download failed: {_FAILED[tried]}") from None
    return path, True


def local_file(flag: str, size: int = 28, root: str | os.PathLike[str] | None = None, *,
               download_missing: bool = True, url: str | None = None, mirror: str | None = None) -> Path:
    """The path of ``flag`` at ``size`` px under the data root (not hashed here), else the bundled copy, else
    downloaded first when allowed."""
    path = resolve_root(root) / file_name(flag, size)
    if not path.is_file():
        path, _ = ensure_file(flag, size, root, download_missing=download_missing, url=url, mirror=mirror)
    return path


def load_medmnist(
    flag: str,
    size: int = 28,
    root: str | os.PathLike[str] | None = None,
    *,
    download_missing: bool = True,
    url: str | None = None,
    mirror: str | None = None,
) -> DataBundle:
    """Load a MedMNIST 2D dataset into uint8 tensors, fetching and verifying the file as needed."""
    _, md5 = url_and_md5(flag, size)
    path = local_file(flag, size, root, download_missing=download_missing, url=url, mirror=mirror)
    # Validate before hashing, so that a malformed file leaves no trace in the verified-MD5 cache.
    bundle = read_file(flag, path, size)
    bundle.identity["md5_verified"] = bundle.identity["md5"] == md5
    if not bundle.identity["md5_verified"]:
        import warnings

        warnings.warn(f"{path} is not the official MedMNIST {flag} file (MD5 {bundle.identity['md5']}, official "
                      f"{md5}): its records are marked md5_verified false and the leaderboard groups them apart as "
                      "an UNOFFICIAL copy; use the official file to compare with published numbers", stacklevel=2)
    return bundle


def read_file(flag: str, path: Path, size: int) -> DataBundle:
    """Read a file in MedMNIST ``flag``'s format (official or synthetic) into a :class:`DataBundle`."""
    meta = info(flag)
    # The MD5 keys the memory-mappable conversion of a large file; asked for only once the file has passed every
    # check, so that a malformed file leaves no trace in the verified-MD5 cache.
    splits, conversion_s = open_npz(path, task=meta["task"], n_labels=n_labels(flag), n_channels=meta["n_channels"],
                                    size=size, key=lambda: file_md5(path))
    return DataBundle(
        name=flag,
        task=meta["task"],
        n_classes=n_labels(flag),
        n_channels=meta["n_channels"],
        modality=MODALITY.get(flag, ""),
        label_names=dict(meta["label"]),
        **splits,
        conversion_s=conversion_s,
        identity={"source": "medmnist", "file": str(path), "md5": file_md5(path), "md5_verified": False,
                  "synthetic": False, "source_size": size,
                  "bundled": is_bundled(path)},
    )
