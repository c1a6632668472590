"""The grid on a real local Ray instance: records equal the pytest path's, a lost worker is retried, the
driver is the one writer. Marked ``cluster``; skipped without Ray unless MEDFT_REQUIRE_CLUSTER=1 (CI)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from medft_bench.cluster.failures import FILE_NAME, FailureLog
from medft_bench.cluster.worker import EXIT_ONCE_ENV
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.store import ResultStore, load_records, read_record
from medft_bench.runner import run_or_reuse, run_trial_or_reuse
from medft_bench.tiers import get_tier
from medft_bench.training.tuning import trial_hash, tuning_grid
from tests.helpers import comparable

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

if os.environ.get("MEDFT_REQUIRE_CLUSTER") != "1":
    ray = pytest.importorskip("ray")
else:
    import ray

from medft_bench.cluster.ray_engine import RayOptions, run_grid_on_ray  # noqa: E402
from medft_bench.run_env import RunEnv  # noqa: E402

TIMEOUT_S = 300  # every run in this file is bounded: a hang fails the test instead of CI's whole job


def smoke_cells(strategies: list[str], protocol: str = "study") -> list:
    return build_grid(get_tier("smoke"), GridOptions(backbones=["resnet50"], strategies=strategies,
                                                     protocol=protocol))


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray instance for the module: two CPUs, loopback only, no dashboard."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def _records(results: Path) -> dict[str, dict]:
    return {r["config_hash"]: r for r in (read_record(p) for p in sorted((results / "smoke").glob("*.json")))}


def test_ray_records_equal_the_pytest_paths(local_ray: Any, tmp_path: Path) -> None:
    import torch

    cells = smoke_cells(["lp", "lp_ft", "knn"])
    opts = RayOptions(address="local", cpus_per_cell=1, max_retries=0, timeout_s=TIMEOUT_S)
    summary = run_grid_on_ray(cells, RunEnv.at(tmp_path / "ray"), opts)
    assert summary.ok and len(summary.written) == 3, summary
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with one CPU: the same float reductions
    try:
        for cfg in cells:  # what benchmarks/test_finetune.py runs for each case, in the grid's order
            run_or_reuse(cfg, RunEnv.at(tmp_path / "pytest", progress=False))
    finally:
        torch.set_num_threads(threads)
    on_ray, on_pytest = _records(tmp_path / "ray"), _records(tmp_path / "pytest")
    assert sorted(on_ray) == sorted(on_pytest) and len(on_ray) == 3  # the same config hashes
    for key, rec in on_pytest.items():
        assert comparable(on_ray[key]) == comparable(rec), rec["cell_id"]
        assert on_ray[key]["metrics"]["test"] == rec["metrics"]["test"]
    lp_ft = next(r for r in on_ray.values() if r["cell"]["strategy"] == "lp_ft")
    assert lp_ft["strategy"]["log"]["lp"]["lp_head"] == "reused"  # LP ran first; its head was shipped
    heads = sorted(p.name.split("__")[0] for p in (tmp_path / "ray" / "smoke").glob("*.head.pt"))
    assert heads == sorted(p.name.split("__")[0] for p in (tmp_path / "pytest" / "smoke").glob("*.head.pt"))

    again = run_grid_on_ray(cells, RunEnv.at(tmp_path / "ray"), opts)  # resume: every cell has its record
    assert len(again.reused) == 3 and not again.written


def test_a_tuned_cell_runs_as_trial_tasks_then_its_own_and_equals_the_pytest_path(local_ray: Any,
                                                                                    tmp_path: Path) -> None:
    import torch

    cells = smoke_cells(["ft"], protocol="tuned")
    (cfg,) = cells
    grid = tuning_grid(cfg)
    assert grid == (1e-4, 1e-3)  # the smoke tier's tuned grid
    opts = RayOptions(address="local", cpus_per_cell=1, max_retries=0, timeout_s=TIMEOUT_S)
    summary = run_grid_on_ray(cells, RunEnv.at(tmp_path / "ray"), opts)
    assert summary.ok and [c.cell_id for c in summary.written] == [cfg.cell_id], summary
    assert sorted(lr for _, lr in summary.trials_kept) == list(grid) and not summary.trials_not_kept
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the pytest path with --trial-tasks: test_tuning_trial's cases, then the cell's case
        for lr in grid:
            run_trial_or_reuse(cfg, lr, RunEnv.at(tmp_path / "pytest", progress=False))
        run_or_reuse(cfg, RunEnv.at(tmp_path / "pytest", progress=False))
    finally:
        torch.set_num_threads(threads)
    on_ray, on_pytest = _records(tmp_path / "ray"), _records(tmp_path / "pytest")
    assert sorted(on_ray) == sorted(on_pytest) and len(on_ray) == 1
    (key,) = on_pytest
    assert comparable(on_ray[key]) == comparable(on_pytest[key])
    assert [p.name for p in (tmp_path / "ray" / "smoke").glob("*.head.pt")] == [
        p.name for p in (tmp_path / "pytest" / "smoke").glob("*.head.pt")] != []
    tuning = on_ray[key]["tuning"]
    assert tuning["model"] == "retrained" and [t["resumed"] for t in tuning["trials"]] == [True, True]
    stored, reference = ResultStore(tmp_path / "ray"), ResultStore(tmp_path / "pytest")
    for lr in grid:  # the driver kept each trial where the pytest path keeps it, with the same content
        th = trial_hash(summary.written[0], lr)
        assert stored.read_trial(summary.written[0], th) is not None
        assert comparable(stored.read_trial(summary.written[0], th)) == comparable(
            reference.read_trial(summary.written[0], th))

    again = run_grid_on_ray(cells, RunEnv.at(tmp_path / "ray"), opts)  # resume: the record is there, nothing runs
    assert len(again.reused) == 1 and not again.written and not again.trials_kept


def test_a_killed_trial_task_is_retried_alone(local_ray: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from medft_bench.runner import with_data_id

    markers = tmp_path / "exits"
    cells = smoke_cells(["ft"], protocol="tuned")
    cfg = with_data_id(cells[0])
    low, high = tuning_grid(cfg)
    markers.mkdir()
    for spared in (cfg.config_hash, trial_hash(cfg, low)):  # only the trial at the higher rate dies, once
        (markers / spared).write_text("spared\n")
    monkeypatch.setenv(EXIT_ONCE_ENV, str(markers))
    summary = run_grid_on_ray(cells, RunEnv.at(tmp_path / "res"), RayOptions(address="local", max_retries=1,
                                                                  timeout_s=TIMEOUT_S))
    assert "first attempt's worker exited" in (markers / trial_hash(cfg, high)).read_text()
    # That trial alone: neither the other trial nor the cell ran again.
    assert [(t.cfg.cell_id, t.lr, attempt) for t, attempt, _ in summary.retries] == [(cfg.cell_id, high, 1)]
    assert sorted(lr for _, lr in summary.trials_kept) == [low, high] and len(summary.trials_kept) == 2
    assert summary.ok and [c.cell_id for c in summary.written] == [cfg.cell_id]
    record = ResultStore(tmp_path / "res").lookup(cfg)
    assert record is not None and record["status"] == "ok" and record["tuning"]["chosen_lr"] in (low, high)
    assert [t["resumed"] for t in record["tuning"]["trials"]] == [True, True]  # both came from their tasks


def test_an_interrupted_tuned_cell_resumes_after_its_kept_trials(local_ray: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from medft_bench.runner import with_data_id

    markers = tmp_path / "exits"
    cells = smoke_cells(["ft"], protocol="tuned")
    cfg = with_data_id(cells[0])
    markers.mkdir()
    for lr in tuning_grid(cfg):  # the trials survive; the cell's task dies and is not retried
        (markers / trial_hash(cfg, lr)).write_text("spared\n")
    monkeypatch.setenv(EXIT_ONCE_ENV, str(markers))
    opts = RayOptions(address="local", max_retries=0, timeout_s=TIMEOUT_S)
    first = run_grid_on_ray(cells, RunEnv.at(tmp_path / "res"), opts)
    assert [c.cell_id for c, _ in first.failed] == [cfg.cell_id] and len(first.trials_kept) == 2
    assert ResultStore(tmp_path / "res").lookup(cfg) is None
    second = run_grid_on_ray(cells, RunEnv.at(tmp_path / "res"), opts)  # the same command: only the cell runs
    assert second.trials_reused == 2 and not second.trials_kept and not second.retries
    assert second.ok and [c.cell_id for c in second.written] == [cfg.cell_id]
    assert not FailureLog(tmp_path / "res").cells


def test_a_lost_worker_is_retried_and_its_cell_completed(local_ray: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    markers = tmp_path / "exits"
    monkeypatch.setenv(EXIT_ONCE_ENV, str(markers))
    cells = smoke_cells(["knn"])
    summary = run_grid_on_ray(cells, RunEnv.at(tmp_path / "res"), RayOptions(address="local", max_retries=1,
                                                                  timeout_s=TIMEOUT_S))
    assert [m.name for m in markers.iterdir()] == [cells[0].config_hash]  # the first attempt's worker died
    assert [(t.label, t.is_trial, attempt) for t, attempt, _ in summary.retries] == [(cells[0].cell_id, False, 1)]
    assert "WorkerCrashedError" in summary.retries[0][2] or "died" in summary.retries[0][2].lower()
    assert summary.ok and [c.cell_id for c in summary.written] == [cells[0].cell_id]
    record = ResultStore(tmp_path / "res").lookup(summary.written[0])
    assert record is not None and record["status"] == "ok" and record["metrics"]["test"]["acc"] is not None
    assert not FailureLog(tmp_path / "res").cells


def test_without_retries_a_lost_worker_is_a_failure_with_its_reason(local_ray: Any, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EXIT_ONCE_ENV, str(tmp_path / "exits"))
    cells = smoke_cells(["knn"])
    summary = run_grid_on_ray(cells, RunEnv.at(tmp_path / "res"), RayOptions(address="local", max_retries=0,
                                                                  timeout_s=TIMEOUT_S))
    assert not summary.ok and [c.cell_id for c, _ in summary.failed] == [cells[0].cell_id]
    assert not list((tmp_path / "res").glob("*/*.json"))  # no record: no fake one either
    logged = json.loads((tmp_path / "res" / FILE_NAME).read_text())["cells"]
    assert logged[cells[0].config_hash]["attempts"] == 1 and logged[cells[0].config_hash]["reason"]
    # The next run (the worker now survives) computes it and takes it off the list.
    summary = run_grid_on_ray(cells, RunEnv.at(tmp_path / "res"), RayOptions(address="local", timeout_s=TIMEOUT_S))
    assert summary.ok and not FailureLog(tmp_path / "res").cells


def test_ctrl_c_on_the_driver_keeps_finished_records_and_cancels_the_rest(tmp_path: Path) -> None:
    """The command line in its own process (its own Ray instance), interrupted once the first record is in."""
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "medft_bench", "grid", "--tier", "smoke", "--backbones", "resnet50",
           "--strategies", "knn,ft", "--protocol", "study", "--ray-address", "local", "--ray-cpus", "1",
           "--results-dir", str(tmp_path)]
    # A terminal's Ctrl-C: a shell without job control starts background commands with SIGINT ignored, and
    # a Python started that way keeps ignoring it (then this test ran in the background, the signal was lost).
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not list(tmp_path.glob("smoke/*knn*.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert list(tmp_path.glob("smoke/*knn*.json")), "the first cell did not finish in time"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "not finished: 1 cells (cancelled)" in err
    records, problems = load_records([tmp_path])
    assert not problems and [r["cell"]["strategy"] for r in records] == ["knn"]
