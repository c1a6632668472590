"""Atomic writes (medft_bench.io): the old file survives a failed write, and no temporary file is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from medft_bench.io import atomic_path, atomic_write


def test_atomic_write_replaces_the_file_and_leaves_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "record.json"
    assert atomic_write(path, "first") == path  # the folder is created
    atomic_write(path, b"second\n")
    assert path.read_bytes() == b"second\n"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"]


@pytest.mark.parametrize("durable", [True, False])
def test_an_exception_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "record.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_path(path, durable=durable) as tmp:
        assert tmp.parent == path.parent and tmp.name.startswith(".record.json.")  # a dot file next to it
        tmp.write_text("half of the n")
        raise RuntimeError("disk on fire")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_rename_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a non-empty folder cannot be replaced by a file
    with pytest.raises(OSError):
        atomic_write(target, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
    assert [p.name for p in target.iterdir()] == ["inside"]


def test_temporary_names_differ_between_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "x.npz"
    with atomic_path(path) as a, atomic_path(path) as b:
        assert a != b and a.exists() and b.exists()
        a.write_text("a")
        b.write_text("b")
    assert path.read_text() == "a"  # the outer block renames last
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_files_that_belong_together_appear_together_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    from medft_bench import io

    head, record = tmp_path / "cell.head.pt", tmp_path / "cell.json"
    real = io._fsync

    def full(path: Path) -> None:  # the second file cannot be flushed: the first must not appear either
        if ".cell.json." in path.name:
            raise OSError(28, "No space left on device")
        real(path)

    monkeypatch.setattr(io, "_fsync", full)
    with pytest.raises(OSError, match="No space"), io.atomic_paths([head, record]) as (h, r):
        h.write_text("head")
        r.write_text("record")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(io, "_fsync", real)
    with io.atomic_paths([head, record]) as (h, r):
        h.write_text("head")
        r.write_text("record")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.head.pt", "cell.json"]



@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    import os

    old = os.umask(umask)
    try:
        path = atomic_write(tmp_path / "record.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600: others can read a shared folder


def test_the_next_write_removes_what_a_killed_write_of_the_same_file_left(tmp_path: Path) -> None:
    """Issue 27: a SIGKILLed write leaves ``.NAME.PID.RANDOM.tmp`` behind for ever. The next write of NAME
    removes it once its writer is gone and nobody has written to it for STALE_AFTER_S; a live writer's file,
    a fresh one (perhaps another host's) and another file's temporaries stay."""
    import os
    import subprocess
    import sys

    from medft_bench import io

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    path = tmp_path / "record.json"
    old = io.time.time() - io.STALE_AFTER_S - 60
    stale = tmp_path / f".record.json.{dead}.abc123.tmp"
    fresh = tmp_path / f".record.json.{dead}.def456.tmp"
    live = tmp_path / f".record.json.{os.getppid()}.ghi789.tmp"
    other = tmp_path / f".other.json.{dead}.jkl012.tmp"
    for p in (stale, fresh, live, other):
        p.write_text("half")
    for p in (stale, live, other):
        os.utime(p, (old, old))
    atomic_write(path, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["record.json", fresh.name, live.name, other.name])


def test_another_files_temporaries_are_never_taken_for_this_files(tmp_path: Path) -> None:
    """``.data.2024.PID.x.tmp`` belongs to ``data.2024``: writing ``data`` must not read 2024 as a dead pid."""
    import os

    from medft_bench import io

    other = tmp_path / ".data.2024.999999999.abc123.tmp"
    other.write_text("half")
    old = io.time.time() - io.STALE_AFTER_S - 60
    os.utime(other, (old, old))
    atomic_write(tmp_path / "data", "new")
    assert other.exists()
