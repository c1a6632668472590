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


def test_the_next_write_into_the_folder_removes_what_killed_writes_left(tmp_path: Path) -> None:
    """Issues 27 and 43: a SIGKILLed write leaves ``.NAME.PID.RANDOM.tmp`` behind. The next write into that folder
    removes it, whatever file it was for (a record reused for ever is never written again), once its writer is
    gone and nobody has written to it for STALE_AFTER_S; a live writer's file and a fresh one (perhaps another
    host's) stay."""
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
    # data.<dead pid>'s temporary, written by a live process: its pid is the last number, not the first
    not_a_pid = tmp_path / f".data.{dead}.{os.getppid()}.mno345.tmp"
    for p in (stale, fresh, live, other, not_a_pid):
        p.write_text("half")
    for p in (stale, live, other, not_a_pid):
        os.utime(p, (old, old))
    atomic_write(path, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["record.json", fresh.name, live.name,
                                                                 not_a_pid.name])


_KILLED_MID_UNIT = """
import os, signal, sys
from pathlib import Path
from medft_bench import io

folder, kill_after = Path(sys.argv[1]), int(sys.argv[2])
real, done = os.replace, []

def replace(src, dst):  # SIGKILL (no handler, no finally) after the unit's k-th rename into place
    if str(src).endswith(".tmp") and not str(dst).endswith(".journal"):
        if len(done) == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        done.append(dst)
    real(src, dst)

os.replace = replace
with io.atomic_paths([folder / "cell.head.pt", folder / "cell.predictions" / "test.csv", folder / "cell.json"],
                     remove=[folder / "cell.model.pt"]) as tmps:
    for tmp, kind in zip(tmps, ("head", "test", "json")):
        tmp.write_text("new " + kind)
"""


def _killed_mid_unit(folder: Path, kill_after: int) -> None:
    import os
    import signal
    import subprocess
    import sys

    for name in ("cell.head.pt", "cell.predictions/test.csv", "cell.json", "cell.model.pt"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text("old")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, "-c", _KILLED_MID_UNIT, str(folder), str(kill_after)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _unit(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


NEW_UNIT = {"cell.head.pt": "new head", "cell.json": "new json", "cell.predictions/test.csv": "new test"}


@pytest.mark.parametrize("kill_after", [0, 1, 2])
def test_a_unit_killed_between_its_renames_is_completed_by_the_next_write_into_its_folder(tmp_path: Path,
                                                                                         kill_after: int) -> None:
    """Issue 43: SIGKILL between a unit's renames left a new head and predictions beside the old record, the
    finished record stranded as a temporary. Its journal lets the next write into the folder finish the unit."""
    _killed_mid_unit(tmp_path, kill_after)
    left = _unit(tmp_path)
    assert left != NEW_UNIT and any(n.endswith(".journal") for n in left)  # mixed, with the journal to finish it
    atomic_write(tmp_path / "another.json", "x")  # any write into the folder, not only of this unit
    assert _unit(tmp_path) == {**NEW_UNIT, "another.json": "x"}  # the network the new record lacks is gone too


def test_a_unit_killed_between_its_renames_is_completed_when_asked(tmp_path: Path) -> None:
    from medft_bench import io

    _killed_mid_unit(tmp_path, 1)
    assert io.pending_commits(tmp_path, "cell.json") and not io.pending_commits(tmp_path, "other.json")
    (journal,) = io.complete_commits(tmp_path, "cell.json")
    assert _unit(tmp_path) == NEW_UNIT and not journal.exists()


def test_readers_refuse_a_fifo_at_once(tmp_path: Path) -> None:
    """Issue 43: a FIFO named ``*.json`` hung ``run``, pytest and ``list tiers`` (open() waits for a writer)."""
    import os

    from medft_bench import io

    fifo = tmp_path / "cell.json"
    os.mkfifo(fifo)
    with pytest.raises(io.NotRegularFileError, match="not a regular file"):
        io.read_regular(fifo)
    assert not io.is_regular(fifo) and io.is_regular(atomic_write(tmp_path / "x.json", "{}"))
    assert io.read_regular(tmp_path / "x.json") == b"{}"


def test_a_journal_never_touches_anything_outside_its_folder(tmp_path: Path) -> None:
    """A hand-made (or hostile) journal in a shared results folder renames only that folder's temporaries."""
    import json

    from medft_bench import io

    folder, outside = tmp_path / "results", tmp_path / "precious.txt"
    folder.mkdir()
    outside.write_text("keep")
    (folder / "x.json").write_text("keep")
    (folder / ".x.json.1.abc.journal").write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "renames": [["x.json", "../precious.txt"]], "remove": []}))
    (folder / ".y.json.1.abc.journal").write_text(json.dumps(
        {"host": "elsewhere", "pid": 1, "renames": [], "remove": ["../precious.txt"]}))
    assert io.complete_commits(folder, force=True) == []
    assert outside.read_text() == "keep" and (folder / "x.json").read_text() == "keep"
