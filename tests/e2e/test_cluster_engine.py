"""The cluster engines' shared parts without an engine: Task (the cell-or-trial branch), the options read once
from the command line, the Ray driver's handlers (retry, then fail), the summary's report, the time format."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from medft_bench.cluster.cli import add_grid_arguments
from medft_bench.cluster.engine import GridSummary, RayOptions, SlurmOptions, report
from medft_bench.cluster.failures import FILE_NAME
from medft_bench.cluster.plan import Job, Task
from medft_bench.cluster.progress import Progress, clock
from medft_bench.cluster.ray_engine import Driver
from medft_bench.errors import MedftError
from medft_bench.grid import GridOptions, build_grid
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome
from medft_bench.tiers import get_tier
from medft_bench.training.tuning import trial_hash


def _tuned_ft():
    (cfg,) = build_grid(get_tier("smoke"), GridOptions(backbones=["resnet50"], strategies=["ft"], protocol="tuned"))
    return cfg


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_grid_arguments(parser)
    return parser.parse_args(["--tier", "smoke", *argv])


def test_a_task_is_a_cell_or_a_trial() -> None:
    cfg = _tuned_ft()
    cell, trial = Task(cfg), Task.of_trial(cfg, 1e-3)
    assert (cell.is_trial, cell.label, cell.key, cell.own_hash) == (False, cfg.cell_id, cfg.config_hash,
                                                                     cfg.config_hash)
    th = trial_hash(cfg, 1e-3)
    assert (trial.is_trial, trial.label, trial.key, trial.own_hash) == (True, f"{cfg.cell_id} lr=0.001",
                                                                         f"{cfg.config_hash}/{th}", th)
    assert trial.outcome(Kind.NOT_RUN, "late").label == trial.label and cell.outcome(Kind.ERROR).lr is None
    failed = Outcome(Kind.FAILED, cfg, {"status": "failed"})
    assert cell.keeps(failed) and not trial.keeps(failed)  # a failed record is a record; a failed trial is not kept
    for kind in (Kind.COMPUTED, Kind.REUSED, Kind.DIVERGED):
        assert cell.keeps(Outcome(kind, cfg)) and trial.keeps(Outcome(kind, cfg))
    for kind in (Kind.ERROR, Kind.NOT_RUN):
        assert not cell.keeps(Outcome(kind, cfg)) and not trial.keeps(Outcome(kind, cfg))


def test_slurm_options_are_read_once_from_the_arguments() -> None:
    cpu = SlurmOptions.from_args(_args("--slurm"), gpu=False)
    assert (cpu.name, cpu.cpus_per_task, cpu.gpus_per_task, cpu.time_min, cpu.executor, cpu.wait) == (
        "medft-smoke", 1, 0, 240, "slurm", False)
    assert cpu.tasks is cpu.parallel is cpu.partition is cpu.mem_gb is cpu.log_dir is None
    gpu = SlurmOptions.from_args(_args("--slurm"), gpu=True)
    assert (gpu.cpus_per_task, gpu.gpus_per_task) == (4, 1)
    given = SlurmOptions.from_args(_args("--slurm", "--slurm-tasks", "3", "--slurm-parallel", "2", "--slurm-partition",
                                         "gpu", "--slurm-gpus-per-task", "0", "--slurm-cpus-per-task", "8",
                                         "--slurm-mem-gb", "16", "--slurm-time", "30", "--slurm-log-dir", "/x/logs",
                                         "--slurm-executor", "local", "--slurm-wait"), gpu=True)
    assert given == SlurmOptions(name="medft-smoke", tasks=3, parallel=2, partition="gpu", gpus_per_task=0,
                                 cpus_per_task=8, mem_gb=16, time_min=30, log_dir=Path("/x/logs"), executor="local",
                                 wait=True)
    with pytest.raises(MedftError, match="--slurm-tasks must be at least 1"):
        SlurmOptions.from_args(_args("--slurm", "--slurm-tasks", "0"), gpu=False)


def test_ray_options_are_read_once_from_the_arguments() -> None:
    assert RayOptions.from_args(_args("--ray-address", "auto"), gpu=True) == RayOptions(
        address="auto", cpus_per_cell=4.0, gpus_per_cell=1.0, max_retries=2)
    assert RayOptions.from_args(_args("--ray-address", "local", "--ray-cpus", "2", "--cpus-per-cell", "2",
                                      "--max-retries", "0", "--timeout", "9"), gpu=False) == RayOptions(
        address="local", num_cpus=2, cpus_per_cell=2.0, gpus_per_cell=0.0, max_retries=0, timeout_s=9.0)
    with pytest.raises(MedftError, match="cannot be negative"):
        RayOptions.from_args(_args("--ray-address", "local", "--gpus-per-cell", "-1"), gpu=False)


def _driver(tmp_path: Path, jobs: list[Job], max_retries: int) -> Driver:
    summary, progress = GridSummary(), Progress(total=len(jobs), engine="ray", stream=io.StringIO())
    return Driver(list(jobs), None, RunEnv.at(tmp_path), RayOptions(max_retries=max_retries), summary, progress)


def test_the_ray_driver_retries_a_lost_cell_then_fails_it(tmp_path: Path) -> None:
    cfg = _tuned_ft()
    job = Job(Task(cfg))
    driver = _driver(tmp_path, [], max_retries=1)
    job.attempts = 1
    driver.lost(job, RuntimeError("node  gone"))  # attempts left: queued again, first
    assert driver.queue == [job] and driver.summary.retries == [(job.task, 1, "RuntimeError: node gone")]
    assert job.key not in driver.finished and not driver.summary.failed
    assert "worker lost on attempt 1" in driver.progress.stream.getvalue()
    driver.queue.remove(job)
    job.attempts = 2
    driver.lost(job, RuntimeError("node gone again"))  # the last attempt: a failure, on the failure list
    assert driver.summary.failed == [(cfg, "RuntimeError: node gone again")] and job.key in driver.finished
    assert len(driver.summary.retries) == 1 and driver.progress.failed == 1 and not driver.queue
    logged = json.loads((tmp_path / FILE_NAME).read_text())["cells"][cfg.config_hash]
    assert logged["attempts"] == 2 and logged["engine"] == "ray"
    assert report(driver.summary) == 1


def test_the_ray_driver_leaves_a_lost_trial_to_its_cell(tmp_path: Path) -> None:
    cfg = _tuned_ft()
    job = Job(Task.of_trial(cfg, 1e-4), attempts=1)
    driver = _driver(tmp_path, [], max_retries=0)
    driver.lost(job, RuntimeError("gone"))
    assert driver.summary.trials_not_kept == [(cfg, 1e-4, "RuntimeError: gone")] and not driver.summary.failed
    assert job.key in driver.finished and driver.progress.done == 1 and not (tmp_path / FILE_NAME).exists()
    assert "not kept" in driver.progress.stream.getvalue() and driver.summary.ok


def test_the_ray_driver_keeps_a_trial_and_writes_a_cell(tmp_path: Path) -> None:
    from medft_bench.results.store import ResultStore

    cfg = _tuned_ft()
    trial = Job(Task.of_trial(cfg, 1e-4))
    driver = _driver(tmp_path, [], max_retries=0)
    th = trial_hash(cfg, 1e-4)
    driver.finish(trial, Outcome(Kind.COMPUTED, cfg, {"trial_hash": th, "lr": 1e-4, "status": "ok"}, lr=1e-4))
    assert driver.summary.trials_kept == [(cfg, 1e-4)] and ResultStore(tmp_path).read_trial(cfg, th) is not None
    failed = Outcome(Kind.FAILED, cfg, {"trial_hash": th, "status": "failed"}, message="nan", lr=1e-3)
    driver.finish(Job(Task.of_trial(cfg, 1e-3)), failed)  # a failed trial is not kept: its cell runs it
    assert driver.summary.trials_not_kept == [(cfg, 1e-3, "nan")]
    driver.finish(Job(Task(cfg)), Outcome(Kind.DATA_MISSING, cfg, message="no file"))
    assert driver.summary.skipped == [(cfg, "no file")] and driver.progress.skipped == 1


def test_the_report_says_which_retries_were_trials(capsys: pytest.CaptureFixture) -> None:
    cfg = _tuned_ft()
    summary = GridSummary(retries=[(Task(cfg), 1, "lost"), (Task.of_trial(cfg, 1e-3), 2, "lost")])
    assert report(summary) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"retried: {cfg.cell_id} (worker lost on attempt 1: lost)",
                   f"retried: {cfg.cell_id} lr=0.001 (a trial; worker lost on attempt 2: lost)"]
    assert report(GridSummary(interrupted=True)) == 130


@pytest.mark.parametrize("seconds, text", [(0, "0.0s"), (12.34, "12.3s"), (59.96, "1m00s"), (845, "14m05s"),
                                           (3600 * 5 + 31 * 60 + 10, "5h31m")])
def test_one_time_format(seconds: float, text: str) -> None:
    assert clock(seconds) == text
