"""The grid as a Slurm job array through submitit: its local executor always (with submitit installed), a
real single-node Slurm when one is up (SLURM_CONF set: scripts/slurm-single-node.sh, started by .ci/run)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from pathlib import Path

import pytest

from medft_bench.__main__ import main
from medft_bench.cluster.plan import plan_grid
from medft_bench.cluster.slurm import run_part, split
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.store import ResultStore, load_records
from medft_bench.tiers import get_tier
from tests.helpers import tiny_cell

GRID = ["grid", "--tier", "smoke", "--backbones", "resnet50", "--protocol", "study", "--slurm", "--slurm-wait",
        "--slurm-time", "10"]


def _cells(strategies: list[str]) -> list:
    return build_grid(get_tier("smoke"), GridOptions(backbones=["resnet50"], strategies=strategies, protocol="study"))


def test_array_parts_keep_lp_ft_with_its_lp_cell(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp_ft", "ft", "lp", "knn"]) + build_grid(
        get_tier("smoke"), GridOptions(backbones=["vgg19"], strategies=["lp", "lp_ft"], protocol="study")),
        ResultStore(tmp_path))
    parts = split(plan.jobs, 3)
    assert len(parts) == 3 and sum(map(len, parts)) == 6
    for part in parts:
        for i, cfg in enumerate(part):
            if cfg.strategy == "lp_ft":  # after its own LP cell, in the same task
                assert any(c.strategy == "lp" and c.backbone == cfg.backbone for c in part[:i])
    assert [len(p) for p in split(plan.jobs, 100)] == [2, 2, 1, 1]  # one task per group at most


def test_the_time_limit_signal_leaves_no_record_and_stops_the_task(tmp_path: Path) -> None:
    cells = [tiny_cell("resnet18", "ft", epochs=50), tiny_cell("resnet18", "knn")]
    previous = signal.getsignal(signal.SIGUSR2)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGUSR2))  # as Slurm does before the limit
    timer.start()
    try:
        outcomes = run_part(cells, str(tmp_path))
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR2, previous)
    assert [o.kind for o in outcomes] == ["timeout", "timeout"]
    assert not list(tmp_path.glob("*/*.json"))  # not a failed record: nothing, and the next submission runs it


@pytest.mark.cluster
@pytest.mark.slow
def test_the_local_executor_runs_the_array(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    args = [*GRID, "--strategies", "lp,lp_ft,knn", "--slurm-tasks", "2", "--slurm-executor", "local",
            "--results-dir", str(tmp_path)]
    assert main(args) == 0
    records = {r["cell"]["strategy"]: r for r in load_records([tmp_path])[0]}
    assert sorted(records) == ["knn", "lp", "lp_ft"] and all(r["status"] == "ok" for r in records.values())
    assert records["lp_ft"]["strategy"]["log"]["lp"]["lp_head"] == "reused"  # LP ran first in its task
    logs = sorted((tmp_path / ".slurm").glob("*_log.out"))
    assert len(logs) == 2 and "resnet50-knn" in "".join(p.read_text() for p in logs)
    plan = plan_grid(_cells(["lp", "lp_ft", "knn"]), ResultStore(tmp_path))
    assert not plan.jobs and len(plan.reused) == 3  # resume: the same command submits nothing


@pytest.mark.cluster
def test_a_real_single_node_slurm_runs_the_array(tmp_path: Path) -> None:
    if not (os.environ.get("SLURM_CONF") and shutil.which("sbatch")):
        if os.environ.get("MEDFT_REQUIRE_SLURM") == "1":
            pytest.fail("MEDFT_REQUIRE_SLURM=1 but no Slurm: start one with scripts/slurm-single-node.sh")
        pytest.skip("no Slurm here (start one with scripts/slurm-single-node.sh start DIR; export SLURM_CONF)")
    pytest.importorskip("submitit")
    assert main([*GRID, "--strategies", "knn", "--results-dir", str(tmp_path)]) == 0
    records, problems = load_records([tmp_path])
    assert not problems and [r["status"] for r in records] == ["ok"]
    out = list((tmp_path / ".slurm").glob("*_0_log.out"))
    assert len(out) == 1 and "resnet50-knn" in out[0].read_text()
