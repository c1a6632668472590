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
from medft_bench.cluster.plan import Task, plan_grid
from medft_bench.cluster.slurm import run_part, split, stages
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.store import ResultStore, load_records
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind
from medft_bench.tiers import get_tier
from tests.helpers import tiny_cell

GRID = ["grid", "--tier", "smoke", "--backbones", "resnet50", "--protocol", "study", "--slurm", "--slurm-wait",
        "--slurm-time", "10"]


def _cells(strategies: list[str], protocol: str = "study") -> list:
    return build_grid(get_tier("smoke"), GridOptions(backbones=["resnet50"], strategies=strategies, protocol=protocol))


def test_array_parts_keep_lp_ft_with_its_lp_cell(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp_ft", "ft", "lp", "knn"]) + build_grid(
        get_tier("smoke"), GridOptions(backbones=["vgg19"], strategies=["lp", "lp_ft"], protocol="study")),
        RunEnv(store=ResultStore(tmp_path)))
    parts = split(plan.jobs, 3)
    assert len(parts) == 3 and sum(map(len, parts)) == 6
    for part in parts:
        for i, task in enumerate(part):
            if task.cfg.strategy == "lp_ft":  # after its own LP cell, in the same task
                assert any(t.cfg.strategy == "lp" and t.cfg.backbone == task.cfg.backbone for t in part[:i])
    assert [len(p) for p in split(plan.jobs, 100)] == [2, 2, 1, 1]  # one task per group at most


def test_trials_run_in_an_array_before_their_cells(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp", "lp_ft", "knn"]) + _cells(["lp_ft", "ft"], protocol="tuned"),
                     RunEnv(store=ResultStore(tmp_path)))
    arrays = stages(plan.jobs)

    def names(stage: list) -> list[str]:
        return sorted(f"{j.cfg.strategy}-{j.cfg.protocol}" + (f"@{j.task.lr:g}" if j.task.lr else "") for j in stage)

    assert [names(s) for s in arrays] == [
        ["ft-tuned@0.0001", "ft-tuned@0.001", "knn-study", "lp-study", "lp_ft-study"],  # nothing to wait for
        ["ft-tuned", "lp_ft-tuned@0.001", "lp_ft-tuned@0.01"],  # after their trials; LP-FT's trials after LP
        ["lp_ft-tuned"],  # after its trials
    ]
    first = split(arrays[0], 100)
    assert len(first) == 4  # LP with the study LP-FT reusing it; kNN; each trial alone
    assert [x.is_trial for x in next(p for p in first if len(p) == 2)] == [False, False]
    assert sum(p[0].is_trial for p in first) == 2
    assert [len(p) for p in split(arrays[1], 100)] == [1, 1, 1]  # the LP cell ran in the earlier array
    study = [j for j in plan.jobs if not j.task.is_trial and j.cfg.protocol == "study"]
    assert stages(study) == [study]  # no tuned cell: one array


def test_the_time_limit_signal_leaves_no_record_and_stops_the_task(tmp_path: Path) -> None:
    cells = [Task(tiny_cell("resnet18", "ft", epochs=50)), Task(tiny_cell("resnet18", "knn"))]
    previous = signal.getsignal(signal.SIGUSR2)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGUSR2))  # as Slurm does before the limit
    timer.start()
    try:
        outcomes = run_part(cells, RunEnv.at(str(tmp_path)))
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR2, previous)
    assert [o.kind for o in outcomes] == [Kind.NOT_RUN, Kind.NOT_RUN]
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
    plan = plan_grid(_cells(["lp", "lp_ft", "knn"]), RunEnv(store=ResultStore(tmp_path)))
    assert not plan.jobs and len(plan.reused) == 3  # resume: the same command submits nothing


@pytest.mark.cluster
@pytest.mark.slow
def test_the_local_executor_runs_trials_then_the_tuned_cell(tmp_path: Path) -> None:
    pytest.importorskip("submitit")
    import torch

    from medft_bench.runner import run_or_reuse, run_trial_or_reuse
    from medft_bench.training.tuning import trial_hash, tuning_grid
    from tests.helpers import comparable

    args = [*GRID, "--strategies", "ft", "--protocol", "tuned", "--slurm-executor", "local",
            "--results-dir", str(tmp_path / "slurm")]
    args.remove("study")
    args.remove("--protocol")
    assert main(args) == 0
    (record,) = load_records([tmp_path / "slurm"])[0]
    assert record["status"] == "ok" and record["tuning"]["model"] == "retrained"
    assert [t["resumed"] for t in record["tuning"]["trials"]] == [True, True]  # kept by the trial tasks
    logs = sorted((tmp_path / "slurm" / ".slurm").glob("*_log.out"))
    assert len(logs) == 3  # two trial tasks, then the cell's
    assert sum("lr=0.0001: written ok" in p.read_text() for p in logs) == 1
    assert sum("-ft-tuned-seed0: written ok" in p.read_text() for p in logs) == 1
    (cfg,) = plan_grid(_cells(["ft"], protocol="tuned"), RunEnv(store=ResultStore(tmp_path / "slurm"))).reused
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the array task (one CPU)
    try:  # the pytest path with --trial-tasks
        for lr in tuning_grid(cfg):
            run_trial_or_reuse(cfg, lr, RunEnv.at(tmp_path / "pytest", progress=False))
        reference = run_or_reuse(cfg, RunEnv.at(tmp_path / "pytest", progress=False)).record
    finally:
        torch.set_num_threads(threads)
    assert comparable(record) == comparable(reference)
    for lr in tuning_grid(cfg):
        th = trial_hash(cfg, lr)
        assert comparable(ResultStore(tmp_path / "slurm").read_trial(cfg, th)) == comparable(
            ResultStore(tmp_path / "pytest").read_trial(cfg, th))


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
