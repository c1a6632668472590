"""Read-only and full folders for the tests: real ones where this process may mount (root), a faked file system
otherwise (``MEDFT_TEST_FAKE_PLACES=1`` forces the fake, to test it as root too).

Real: a read-only bind mount, or a 2 MB tmpfs filled to the last byte. Fake: under the folder, creating a file or a
folder raises ``EROFS`` (read-only), or every write raises ``ENOSPC`` (full; files can still be created, as on a
full tmpfs). Either way the folder holds ``earlier.txt``, written before, which must survive unchanged.
"""

from __future__ import annotations

import builtins
import errno
import functools
import io
import itertools
import os
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EARLIER = b"written before the place was read-only or full\n"
FILLER = "filler"  # what fills a full tmpfs
CAUSE = {"read-only": os.strerror(errno.EROFS), "full": os.strerror(errno.ENOSPC)}


@dataclass(frozen=True)
class Place:
    path: Path
    kind: str  # "read-only" or "full"
    real: bool
    before: dict[str, bytes]  # every file the folder held before it became read-only or full

    @property
    def cause(self) -> str:
        """The cause a message must name: the system's words ("Read-only file system", "No space left on device")."""
        return CAUSE[self.kind]

    def untouched(self) -> bool:
        """Every file the folder held is as it was, and no file was left beside them (folders may be, empty)."""
        return _files(self.path) == self.before


def _files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the filler and the results store's lock files (empty, kept by design)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != FILLER and p.parent.name != ".locks"}


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach it now, freed when unused


@functools.cache
def mounts_work() -> bool:
    """Whether this process can mount a tmpfs (root, a kernel that allows it), unless the fake is forced."""
    if os.environ.get("MEDFT_TEST_FAKE_PLACES") == "1" or os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as d:
        if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", d):
            return False
        _umount(Path(d))
    return True


def _under(path: Any, root: Path) -> bool:
    try:
        return isinstance(path, (str, os.PathLike)) and Path(os.path.abspath(path)).is_relative_to(root)
    except (TypeError, ValueError):
        return False


class _FullFile:
    """A file on a full disk: opened, but every write fails."""

    def __init__(self, f: Any) -> None:
        self._f = f

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def writelines(self, lines: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def _fake(monkeypatch: pytest.MonkeyPatch, root: Path, kind: str) -> None:
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    refuse = errno.EROFS

    def writing(mode: str) -> bool:
        return any(c in mode for c in "wax+")

    def fake_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if _under(file, root) and writing(mode):
            if kind == "read-only":
                raise OSError(refuse, os.strerror(refuse), str(file))
            return _FullFile(real_open(file, mode, *args, **kwargs))
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if kind == "read-only" and _under(path, root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(refuse, os.strerror(refuse), str(path))
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
        if kind == "read-only" and _under(path, root) and not os.path.isdir(path):
            raise OSError(refuse, os.strerror(refuse), str(path))
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


MakePlace = Callable[..., Place]
_LEFTOVER = re.compile(r"/pytest-\d+/[^/]+/place-\d+")


def _unmount_leftovers(current: Path) -> None:
    """Unmount the places an earlier session could not (killed before its teardown): mount points named like ours
    under pytest's folders of this user, outside this session's."""
    try:
        points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    own = current.parent  # /tmp/pytest-of-USER
    for point in points:
        point = point.encode().decode("unicode_escape")  # /proc/mounts escapes spaces as \040
        if point.startswith(f"{own}/") and _LEFTOVER.search(point) and not point.startswith(f"{current}/"):
            _umount(Path(point))


@pytest.fixture(scope="session")
def _no_leftover_mounts(tmp_path_factory: pytest.TempPathFactory) -> None:
    if mounts_work():
        _unmount_leftovers(tmp_path_factory.getbasetemp())


@pytest.fixture
def make_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _no_leftover_mounts: None) -> Iterator[MakePlace]:
    """``make_place(kind, prepare=None)``: a folder that is ``kind`` ("read-only" or "full") and holds
    ``earlier.txt`` and whatever ``prepare(path)`` wrote before; unmounted after the test."""
    mounted: list[Path] = []
    made = itertools.count()

    def make(kind: str, prepare: Callable[[Path], None] | None = None) -> Place:
        n = next(made)
        path, src = tmp_path / f"place-{n}", tmp_path / f"src-{n}"
        for folder in (path, src):
            folder.mkdir()
        if not mounts_work():
            (path / "earlier.txt").write_bytes(EARLIER)
            if prepare is not None:
                prepare(path)
            before = _files(path)
            _fake(monkeypatch, path.resolve(), kind)
            return Place(path, kind, False, before)
        if kind == "read-only":
            (src / "earlier.txt").write_bytes(EARLIER)
            if prepare is not None:
                prepare(src)
            assert _mount("--bind", str(src), str(path))
            mounted.append(path)
            assert _mount("-o", "remount,ro,bind", str(path)), "could not remount the bind mount read-only"
        else:
            assert _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path))
            mounted.append(path)
            (path / "earlier.txt").write_bytes(EARLIER)
            if prepare is not None:
                prepare(path)
            with open(path / FILLER, "wb", buffering=0) as f:  # to the last byte: nothing more fits
                try:
                    while f.write(b"\0" * 4096):
                        pass
                except OSError:
                    pass
        return Place(path, kind, True, _files(path))

    try:
        yield make
    finally:
        for path in mounted:
            _umount(path)
