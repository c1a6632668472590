"""JSON-ready data, and atomic file writes: the one place that writes a temporary file next to the target and
renames it into place.

A reader sees the old file or the new one, never half of one; an exception (or a crash) while writing leaves
the old file as it was and removes the temporary file. Temporary files are dot files (``.NAME.PID.RANDOM.tmp``)
in the target's folder, so that the rename stays on one file system and record loaders skip them; the next
write of the same file removes those an interrupted write (SIGKILL, a power cut) left behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = True, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path`` to write; when the block ends normally, rename it over ``path``.

    ``durable``: flush the file (and the folder's entry) to disk first, so that a power cut after the rename
    cannot leave an empty file: records and data files; caches that are checked when read can skip it.
    The block's exception, or the rename's, propagates after the temporary file is removed. Parent folders are
    created.
    """
    with atomic_paths([path], durable=durable, suffix=suffix) as (tmp,):
        yield tmp


@contextlib.contextmanager
def atomic_paths(paths: Sequence[str | os.PathLike[str]], *, durable: bool = True, suffix: str = ".tmp"
                 ) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together: every one is written and flushed before the first is
    renamed, and they are renamed in the order given (a record last: on disk, it implies the files before it)."""
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        for path in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(path, suffix)
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent)
            try:  # mkstemp creates 0600; a plain open() would give 0666 less the umask (shared results folders)
                os.fchmod(fd, 0o666 & ~_umask())
            finally:
                os.close(fd)
            tmps.append(Path(name))
        yield tmps
        if durable:
            for tmp in tmps:
                _fsync(tmp)
        for tmp, path in zip(tmps, targets):
            os.replace(tmp, path)
        if durable:
            for folder in dict.fromkeys(p.parent for p in targets):
                with contextlib.suppress(OSError):  # not every platform or file system syncs a folder
                    _fsync(folder)
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


STALE_AFTER_S = 600.0  # a live write keeps its file's mtime fresh; one untouched this long was interrupted


def remove_stale_temporaries(path: str | os.PathLike[str], suffix: str = ".tmp") -> list[Path]:
    """Remove what interrupted writes of ``path`` (SIGKILL, a power cut) left beside it: its temporary files
    whose writer is not running on this machine and which nobody has written to for :data:`STALE_AFTER_S`
    (the second condition keeps a writer on another host of a shared folder safe). Returns what was removed."""
    path = Path(path)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob.escape(path.name)}.*{suffix}"))
    except OSError:
        return []
    now = time.time()
    own = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+{re.escape(suffix)}")  # mkstemp's part has no dot
    for tmp in candidates:
        match = own.fullmatch(tmp.name)  # not ".data.2024.PID.x.tmp", which is data.2024's
        try:
            if match is None or _running(int(match.group(1))) or now - tmp.lstat().st_mtime < STALE_AFTER_S:
                continue
            tmp.unlink()
        except OSError:
            continue
        removed.append(tmp)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process, or not a pid: leave it
    return True


@contextlib.contextmanager
def deferred_signals(signums: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then deliver the first one that came to the handler
    it would have met: for a few renames that must all happen or none (a leaderboard's folder). Only the main
    thread can set handlers; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in signums}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            signal.raise_signal(received[0])  # SIGINT: KeyboardInterrupt here; SIGTERM: as it would have


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; set straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, durable: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically; see :func:`atomic_path`."""
    path = Path(path)
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON data: objects JSON cannot hold become their ``str``, non-finite floats None (JSON
    has no NaN, and Python's json module would write one that other readers refuse)."""
    return json.loads(json.dumps(_finite(obj), default=str, allow_nan=False))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
