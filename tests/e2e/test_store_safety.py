"""Issue 43: the results store never loses data. A file this code cannot read as a record blocks its cell (never
replaced); a write killed between its files' renames is finished, never left half old and half new."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medft_bench.__main__ import main
from medft_bench.errors import RecordBlockedError
from medft_bench.results.record import SCHEMA_VERSION
from medft_bench.results.store import ResultStore
from medft_bench.run_env import RunEnv
from medft_bench.runner import resolved
from medft_bench.tiers import get_tier
from tests.helpers import make_record, tiny_cell

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--tier", "smoke", "--datasets", "pneumoniamnist", "--backbones", "resnet18", "--strategies", "lp",
        "--seeds", "0", "--progress", "off"]


def _newer(path: Path) -> None:
    record = make_record()
    record.update(schema_version=SCHEMA_VERSION + 1, added_later={"x": 1})
    path.write_text(json.dumps(record))


def _unknown_field(path: Path) -> None:
    path.write_text(json.dumps({**make_record(), "added_later": 1}))


def _damaged(path: Path) -> None:
    path.write_text('{"schema_version": 3, "cell_id": ')


def _fifo(path: Path) -> None:
    os.mkfifo(path)


@pytest.mark.parametrize(("make", "why"), [
    (_newer, f"written by a newer medft-bench (record schema v{SCHEMA_VERSION + 1}; this one reads up to "
             f"v{SCHEMA_VERSION}). It was left as it is, and the cell was not run: update medft-bench"),
    (_unknown_field, f"does not match result schema v{SCHEMA_VERSION}: (top): Additional properties are not allowed "
                     "('added_later' "
                     "was unexpected). It was left as it is, and the cell was not run: repair it"),
    (_damaged, "not valid JSON"),
    (_fifo, "not a record (not a regular file: a FIFO, socket or device)"),
])
@pytest.mark.parametrize("rerun", [False, True])
def test_a_record_this_code_cannot_read_blocks_its_cell_and_is_never_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], make, why: str, rerun: bool) -> None:
    """An older checkout recomputed a newer record's cell and replaced it without a word: data lost."""
    results = tmp_path / "results"
    env = RunEnv.at(results, progress=False)
    cfg = resolved(get_tier("smoke").cell("pneumoniamnist", 32, "resnet18", "lp", 0), env)
    path = ResultStore(results).path_for(cfg)
    path.parent.mkdir(parents=True)
    make(path)
    before = path.read_bytes() if path.is_file() else None

    rc = main(["run", *ARGS, "--results-dir", str(results), *(["--rerun"] if rerun else [])])
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert f"error: {path} blocks {cfg.cell_id}: " in err and why in err and err.count(str(path)) == 1, err
    assert "move it out of the results directory to compute the cell again" in err
    assert (path.read_bytes() if path.is_file() else None) == before and os.path.lexists(path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # nothing written beside it either


def test_a_write_over_a_file_it_cannot_read_keeps_the_file_and_the_computed_record(tmp_path: Path) -> None:
    """The last guard (a cluster driver writes what a worker computed): the result is kept in the error."""
    store, cfg = ResultStore(tmp_path), tiny_cell()
    path = store.path_for(cfg)
    path.parent.mkdir(parents=True)
    _newer(path)
    before = path.read_bytes()
    record = make_record()
    with pytest.raises(RecordBlockedError, match="the cell was computed but not stored") as info:
        store.write(record, cfg)
    assert info.value.record == record and path.read_bytes() == before


_KILLED_AT_THE_RECORDS_RENAME = """
import json, os, signal, sys
import torch
from medft_bench.results.store import ResultStore
from tests.helpers import tiny_cell

real = os.replace

def replace(src, dst):  # SIGKILL (no handler, no finally) as the record itself is renamed into place
    if str(dst).endswith("__" + tiny_cell().config_hash + ".json"):
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst)

os.replace = replace
record = json.loads(open(sys.argv[2]).read())
ResultStore(sys.argv[1]).write(record, tiny_cell(), {"w": torch.full((2,), 2.0)}, predictions={"new.csv": "new"})
"""


def test_a_rerun_killed_at_the_records_rename_is_finished_and_never_mixed(tmp_path: Path) -> None:
    """Killed during --rerun at the record's rename, the new head and predictions sat beside the old record and
    the finished record stayed a temporary for ever. The next claim of the cell finishes the unit."""
    store, cfg = ResultStore(tmp_path), tiny_cell()
    old, new = ({**make_record(primary=p), "config_hash": cfg.config_hash} for p in (0.5, 0.9))
    store.write(old, cfg, {"w": torch.ones(2)}, predictions={"old.csv": "old"})
    (tmp_path / "new.json").write_text(json.dumps(new))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _KILLED_AT_THE_RECORDS_RENAME, str(tmp_path),
                           str(tmp_path / "new.json")], env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert store.head_path_for(cfg).exists() and json.loads(store.path_for(cfg).read_text()) == old  # mixed

    assert store.lookup(cfg) is None  # an unfinished unit is never served: its head is not its record's
    with store.claim(cfg):
        assert store.lookup(cfg) == new
    assert torch.equal(store.load_head(cfg)["w"], torch.full((2,), 2.0))
    folder = store.path_for(cfg).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [store.path_for(cfg).name, store.head_path_for(cfg).name, store.path_for(cfg).stem + ".predictions"])
    assert [p.name for p in (folder / (store.path_for(cfg).stem + ".predictions")).iterdir()] == ["new.csv"]


def test_every_reader_skips_a_fifo_named_like_its_files(tmp_path: Path) -> None:
    """A FIFO named ``*.json`` in the results folder hung ``run``, pytest and ``list tiers`` (the leaderboard
    skipped it); named ``summary.json`` in ``--out``, or given as ``--benchmark-json``, it hung the leaderboard."""
    from medft_bench.leaderboard.load import benchmark_record_paths, load_inputs
    from medft_bench.leaderboard.publish import publish
    from medft_bench.listing import tier_rows
    from medft_bench.results.store import load_records
    from tests.helpers import write

    results, out = tmp_path / "results", tmp_path / "board"
    path = write(results, make_record())
    os.mkfifo(path.parent / "a_fifo.json")
    os.mkfifo(results / "bench.json")
    assert load_records([results]) == ([json.loads(path.read_text())], [])
    assert len(load_inputs([results]).runs) == 1 and not load_inputs([results]).problems
    assert tier_rows(results)  # read the records for its estimates without waiting on the FIFO
    (problem,) = benchmark_record_paths(results / "bench.json")[1]
    assert "not a regular file" in problem.reason
    out.mkdir()
    os.mkfifo(out / "summary.json")  # not this leaderboard's summary: a file it did not write, refused at once
    with pytest.raises(Exception, match="holds summary.json, which this leaderboard did not write"):
        publish([results], out=out)
