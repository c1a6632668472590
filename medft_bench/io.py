"""JSON-ready data, and atomic file writes: the one place that writes a temporary file next to the target and
renames it into place.

A reader sees the old file or the new one, never half of one; an exception (or a crash) while writing leaves
the old file as it was and removes the temporary file. Temporary files are dot files (``.NAME.PID.RANDOM.tmp``)
in the target's folder, so that the rename stays on one file system and record loaders skip them; the next
write into the same folder removes those an interrupted write (SIGKILL, a power cut) left behind, whatever file
they were for.

Files that belong together (a record with its head, predictions and network; a leaderboard's pages) are renamed
under a journal (``.NAME.PID.RANDOM.journal`` beside the last of them, listing every rename and removal): written
once every file is complete and flushed, removed when the last step is done. A writer killed in between leaves
it, and the next write into that folder (or :func:`complete_commits`) carries out the rest: the unit is never
half old and half new for longer than until then.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import math
import os
import re
import signal
import socket
import stat
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
def atomic_paths(paths: Sequence[str | os.PathLike[str]], *, durable: bool = True, suffix: str = ".tmp",
                 remove: Sequence[str | os.PathLike[str]] = ()) -> Iterator[list[Path]]:
    """:func:`atomic_path` for files that belong together: every one is written and flushed before the first is
    renamed, and they are renamed in the order given (a record last: on disk, it implies the files before it),
    then ``remove`` (files the unit no longer holds) is deleted. With more than one step, a journal makes the
    steps one unit even under SIGKILL (see the module's note)."""
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    journal: Path | None = None
    try:
        folders = list(dict.fromkeys(p.parent for p in targets))
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            complete_commits(folder)  # a killed writer's unit first: its temporaries are its data
        for folder in folders:
            remove_stale_temporaries(folder, suffix)
        for path in targets:
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
        steps = list(zip(tmps, targets))
        removals = [Path(p) for p in remove]
        if len(steps) + len(removals) > 1:
            journal = _write_journal(targets[-1] if targets else removals[-1], steps, removals)
        _apply(steps, removals)
        if durable:
            for folder in dict.fromkeys(p.parent for p in [*targets, *removals]):
                with contextlib.suppress(OSError):  # not every platform or file system syncs a folder
                    _fsync(folder)
        if journal is not None:
            journal.unlink()
            journal = None
    finally:
        if journal is None:  # a journal left behind still needs its temporaries: the next write completes it
            for tmp in tmps:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()


JOURNAL_SUFFIX = ".journal"
# .NAME.PID.RANDOM.SUFFIX: mkstemp's part has no dot, so the last dotted number is the writer's pid
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(?P<rand>[^.]+)(?P<suffix>\.[^.]+)")


def _write_journal(last: Path, steps: list[tuple[Path, Path]], removals: list[Path]) -> Path:
    """Record the unit's steps (paths relative to the journal's folder, so that a moved folder still completes)
    durably beside ``last``, under a name that carries this writer's pid."""
    folder = last.parent
    doc = {"host": socket.gethostname(), "pid": os.getpid(),
           "renames": [[os.path.relpath(t, folder), os.path.relpath(p, folder)] for t, p in steps],
           "remove": [os.path.relpath(p, folder) for p in removals]}
    fd, name = tempfile.mkstemp(prefix=f".{last.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    journal = Path(name).with_suffix(JOURNAL_SUFFIX)
    os.replace(name, journal)
    with contextlib.suppress(OSError):
        _fsync(folder)
    return journal


def _apply(steps: list[tuple[Path, Path]], removals: list[Path]) -> None:
    """Carry out a unit's steps; a step already done (its temporary gone, its file removed) is passed over, so
    that two processes completing one journal, or a completion after a partial one, end the same way."""
    for tmp, path in steps:
        with contextlib.suppress(FileNotFoundError):
            os.replace(tmp, path)
    for path in removals:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            import warnings

            warnings.warn(f"{path} is no longer part of what was written beside it and could not be removed "
                          f"({exc.strerror or exc}): delete it", stacklevel=3)


def pending_commits(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """The journals in ``folder`` (only those of the unit whose last file is ``name``, when given): units a
    writer has begun to rename into place and not finished (it is renaming now, or it was killed)."""
    pattern = f".{glob.escape(name)}.*{JOURNAL_SUFFIX}" if name else f".*{JOURNAL_SUFFIX}"
    try:
        return sorted(p for p in Path(folder).glob(pattern) if _TEMPORARY.fullmatch(p.name)
                      and (name is None or _TEMPORARY.fullmatch(p.name)["name"] == name))
    except OSError:
        return []


def complete_commits(folder: str | os.PathLike[str], name: str | None = None, *, force: bool = False) -> list[Path]:
    """Finish what killed writers began in ``folder`` (only ``name``'s unit, when given): every rename and
    removal their journals list. A journal whose writer may still be at work (running on this machine, or
    written less than :data:`STALE_AFTER_S` ago on another) is left to it unless ``force`` (the caller holds the
    lock that writer held). Returns the journals completed."""
    done = []
    for journal in pending_commits(folder, name):
        try:
            doc = json.loads(read_regular(journal))
            if not force and _may_be_live(journal, doc):
                continue
            # Claimed by a rename to this process's pid: one completer at a time; if it dies too, the next one
            # finds a journal of a dead writer again.
            match = _TEMPORARY.fullmatch(journal.name)
            mine = journal.with_name(f".{match['name']}.{os.getpid()}.{match['rand']}{JOURNAL_SUFFIX}")
            os.replace(journal, mine)
        except FileNotFoundError:
            continue  # completed meanwhile by its writer or another process
        except (OSError, ValueError, TypeError):
            continue  # unreadable: left as it is, for a person to look at (its temporaries are kept too)
        base = Path(folder)
        try:
            steps = [(base / t, base / p) for t, p in doc["renames"]]
            removals = [base / p for p in doc.get("remove", [])]
            # only this folder's own temporaries renamed, nothing outside it touched (a hand-made journal)
            if not all(_TEMPORARY.fullmatch(t.name) for t, _ in steps) or not all(
                    _inside(base, p) for p in [*(t for step in steps for t in step), *removals]):
                continue
        except (KeyError, TypeError, ValueError):
            continue
        try:
            _apply(steps, removals)
        except OSError as exc:  # a rename that cannot be done (a folder where a file goes): never every write's
            import warnings

            warnings.warn(f"{mine}: an interrupted write cannot be finished ({exc.strerror or exc}: "
                          f"{exc.filename}); fix that path, the next write into {base} finishes it", stacklevel=2)
            continue
        with contextlib.suppress(OSError):
            _fsync(base)
        mine.unlink(missing_ok=True)
        done.append(journal)
    return done


def _inside(base: Path, path: Path) -> bool:
    rel = path.relative_to(base)  # joined from a relative path: absolute ones raise ValueError
    return not rel.is_absolute() and ".." not in rel.parts


def _may_be_live(journal: Path, doc: Any) -> bool:
    """A journal's writer may still be renaming: young, and on this machine its process is running (a writer
    takes milliseconds from the journal to its removal, so an old journal is a dead writer's, pid reused or not)."""
    try:
        young = time.time() - journal.lstat().st_mtime < STALE_AFTER_S
    except OSError:
        return True
    if not young:
        return False
    if isinstance(doc, dict) and doc.get("host") == socket.gethostname() and isinstance(doc.get("pid"), int):
        return _running(doc["pid"])
    return True  # another machine's writer on a shared folder: given until STALE_AFTER_S


STALE_AFTER_S = 600.0  # a live write keeps its file's mtime fresh; one untouched this long was interrupted


def remove_stale_temporaries(folder: str | os.PathLike[str], suffix: str = ".tmp") -> list[Path]:
    """Remove what interrupted writes into ``folder`` (SIGKILL, a power cut) left there, whatever file they were
    for: temporary files whose writer is not running on this machine and which nobody has written to for
    :data:`STALE_AFTER_S` (the second condition keeps a writer on another host of a shared folder safe), unless
    a journal not yet completed lists them. Returns what was removed."""
    folder = Path(folder)
    removed = []
    try:
        candidates = list(folder.glob(f".*{suffix}"))
    except OSError:
        return []
    if not candidates:
        return []
    now = time.time()
    kept = _journaled(folder)
    for tmp in candidates:
        match = _TEMPORARY.fullmatch(tmp.name)  # ".data.2024.PID.x.tmp" is data.2024's, by PID
        try:
            if (match is None or match["suffix"] != suffix or tmp.name in kept or _running(int(match["pid"]))
                    or now - tmp.lstat().st_mtime < STALE_AFTER_S):
                continue
            tmp.unlink()
        except OSError:
            continue
        removed.append(tmp)
    return removed


def _journaled(folder: Path) -> set[str]:
    """The names of files in ``folder`` that a journal there still lists (an unreadable journal keeps all)."""
    names: set[str] = set()
    for journal in pending_commits(folder):
        try:
            doc = json.loads(read_regular(journal))
            names |= {Path(t).name for t, _ in doc["renames"] if Path(t).parent == Path(".")}
        except (OSError, ValueError, TypeError, KeyError):
            return {p.name for p in folder.iterdir()}
    return names


class NotRegularFileError(OSError):
    """A path that is not a regular file (a FIFO, a socket, a device) where a file was expected."""


def read_regular(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the regular file ``path``; :class:`NotRegularFileError` for anything else, found without
    blocking (opening a FIFO named ``*.json`` for reading would wait for a writer for ever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFileError(errno.EINVAL, "not a regular file (a FIFO, socket or device)", str(path))
        os.set_blocking(fd, True)
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def is_regular(path: str | os.PathLike[str]) -> bool:
    """``path`` is a regular file (after symbolic links): what every reader of a folder's files reads."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


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
