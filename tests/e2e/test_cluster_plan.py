"""The cluster driver's plan and command line, without an engine: order, reuse, shipped heads, usage errors."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from medft_bench.__main__ import main
from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import Task, plan_grid
from medft_bench.cluster.progress import Progress
from medft_bench.cluster.worker import Shipped, ShippedStore, run_task
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.store import ResultStore, load_records
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, run_or_reuse, run_trial_or_reuse, with_data_id
from medft_bench.tiers import get_tier
from medft_bench.training.tuning import trial_hash, tuning_grid
from tests.helpers import comparable, tiny_cell


def _cells(strategies: list[str], protocol: str | None = "study") -> list:
    return build_grid(get_tier("smoke"), GridOptions(backbones=["resnet50"], strategies=strategies,
                                                     protocol=protocol))


def test_lp_cells_go_first_and_lp_ft_waits_for_its_own(tmp_path: Path) -> None:
    cells = _cells(["lp_ft", "ft", "lp"])  # LP-FT before LP in the grid's order
    plan = plan_grid(cells, RunEnv(store=ResultStore(tmp_path)))
    order = [j.cfg.strategy for j in plan.jobs]
    assert order[0] == "lp" and order[1:] == ["lp_ft", "ft"]  # otherwise the grid's order
    lp, lp_ft = plan.jobs[0], plan.jobs[1]
    assert lp_ft.needs == {lp.cfg.config_hash} and lp_ft.reuses == (lp.cfg,)
    assert lp.needs == set() and plan.jobs[2].needs == set()


def test_a_tuned_lp_ft_reuses_the_study_lp_cell(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp", "lp_ft"], protocol="both"), RunEnv(store=ResultStore(tmp_path)))
    study_lp = next(j for j in plan.jobs if j.cfg.strategy == "lp" and j.cfg.protocol == "study")
    tuned = next(j for j in plan.jobs if j.cfg.strategy == "lp_ft" and j.cfg.protocol == "tuned")
    assert tuned.needs == {study_lp.cfg.config_hash}


def test_without_its_lp_cell_in_the_run_lp_ft_needs_nothing(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp_ft"]), RunEnv(store=ResultStore(tmp_path)))
    assert [j.needs for j in plan.jobs] == [set()]  # it ships a stored LP head if one exists, else solves its own
    assert plan.jobs[0].reuses[0].strategy == "lp"


def test_the_shipped_store_serves_only_what_was_shipped() -> None:
    lp, other = _cells(["lp", "ft"])
    head = {"weight": torch.zeros(2, 3)}
    store = ShippedStore([Shipped(lp.config_hash, {"status": "ok"}, head)])
    assert store.lookup(lp) == {"status": "ok"} and store.load_head(lp) is head
    assert store.lookup(other) is None and store.load_head(other) is None
    assert store.read_trial(lp, "x") is None and store.write_trial(lp, {}) is None  # a worker writes nothing


def test_a_tuned_cell_is_its_trials_then_itself(tmp_path: Path) -> None:
    cells = _cells(["lp", "lp_ft", "ft", "knn"], protocol="tuned")  # a tuned LP-FT reuses the study LP cell
    cells = _cells(["lp"]) + cells
    plan = plan_grid(cells, RunEnv(store=ResultStore(tmp_path)))
    by = {j.label: j for j in plan.jobs}
    ft = next(j for j in plan.jobs if j.cfg.strategy == "ft" and not j.task.is_trial)
    lp_ft = next(j for j in plan.jobs if j.cfg.strategy == "lp_ft" and not j.task.is_trial)
    lp = next(j for j in plan.jobs if j.cfg.strategy == "lp" and j.cfg.protocol == "study")
    assert [t.lr for t in ft.trials] == list(tuning_grid(ft.cfg)) == [1e-4, 1e-3]
    ft_trials = [by[f"{ft.cfg.cell_id} lr={lr:g}"] for lr in (1e-4, 1e-3)]
    assert ft.needs == {t.key for t in ft_trials} and all(t.needs == set() for t in ft_trials)
    lp_ft_trials = [j for j in plan.jobs if j.task.is_trial and j.cfg.strategy == "lp_ft"]
    assert len(lp_ft_trials) == 2 and all(t.needs == {lp.key} for t in lp_ft_trials)  # its trials reuse LP too
    assert lp_ft.needs == {lp.key} | {t.key for t in lp_ft_trials}
    assert plan.cells == 5 and len(plan.jobs) == 9  # study LP, tuned LP, LP-FT, FT, kNN; four trials
    kinds = ["trial" if j.task.is_trial else "cell" for j in plan.jobs]
    assert plan.jobs[0] is lp and kinds[1:5] == ["trial"] * 4  # needed cells, then trials, then the rest
    assert all(not j.trials for j in plan.jobs if j.cfg.strategy in ("lp", "knn"))  # nothing to tune


def test_kept_trials_are_not_run_again_unless_rerun(tmp_path: Path) -> None:
    cfg = with_data_id(_cells(["ft"], protocol="tuned")[0])
    store = ResultStore(tmp_path)
    kept = trial_hash(cfg, 1e-4)
    store.write_trial(cfg, {"trial_hash": kept, "lr": 1e-4, "status": "ok"})
    plan = plan_grid([cfg], RunEnv(store=store))
    assert [j.label for j in plan.jobs] == [f"{cfg.cell_id} lr=0.001", cfg.cell_id]
    assert [t.trial_hash for t in plan.reused_trials] == [kept]
    assert plan.jobs[1].needs == {plan.jobs[0].key} and len(plan.jobs[1].trials) == 2  # the kept one is shipped
    rerun = plan_grid([cfg], RunEnv(store=store, rerun=True))
    assert len(rerun.jobs) == 3 and not rerun.reused_trials


def test_the_shipped_store_serves_shipped_trials_and_locks_nothing() -> None:
    cfg = _cells(["ft"], protocol="tuned")[0]
    store = ShippedStore([], [{"trial_hash": "abc", "status": "ok"}])
    assert store.read_trial(cfg, "abc") == {"trial_hash": "abc", "status": "ok"}
    assert store.read_trial(cfg, "other") is None
    with store.claim(cfg, "abc"):
        assert store.write_trial(cfg, {"trial_hash": "x"}) is None


def test_worker_trial_tasks_then_the_cell_task_give_the_pytest_paths_record(tmp_path: Path) -> None:
    """What a cluster task runs (no engine): each trial alone, its summary kept by the caller as the driver
    keeps it, then the cell with the kept trials shipped; against the pytest path with --trial-tasks."""
    cfg = with_data_id(replace(tiny_cell("resnet18", "ft"), protocol="tuned", lr_grid=(1e-3, 1e-2)))
    settings = RunEnv(threads=torch.get_num_threads())
    driver = ResultStore(tmp_path / "driver")
    for lr in (1e-3, 1e-2):
        result = run_task(Task.of_trial(cfg, lr), [], settings)
        assert result.kind is Kind.COMPUTED and result.record["lr"] == lr and result.record["status"] == "ok"
        # A trial's summary, not a record: validation only, the test split is not touched.
        assert "val" in result.record and "metrics" not in result.record and "test" not in result.record
        driver.write_trial(cfg, result.record)
    shipped = [driver.read_trial(cfg, trial_hash(cfg, lr)) for lr in (1e-3, 1e-2)]
    cell = run_task(Task(cfg), [], settings, shipped)
    assert cell.kind is Kind.COMPUTED and cell.record["tuning"]["model"] == "retrained" and cell.lr is None
    assert cell.head_state is not None and set(cell.head_state) == {"weight", "bias"}  # written next to the record
    assert [t["resumed"] for t in cell.record["tuning"]["trials"]] == [True, True]

    for lr in (1e-3, 1e-2):  # the pytest path: test_tuning_trial's cases, then the cell's case
        run_trial_or_reuse(cfg, lr, RunEnv.at(tmp_path / "pytest", progress=False))
    reference = run_or_reuse(cfg, RunEnv.at(tmp_path / "pytest", progress=False)).record
    assert comparable(cell.record) == comparable(reference)
    assert cell.record["metrics"]["test"] == reference["metrics"]["test"]
    kept_by_pytest = ResultStore(tmp_path / "pytest")
    for lr in (1e-3, 1e-2):  # the same trial files, apart from timings
        th = trial_hash(cfg, lr)
        assert comparable(driver.read_trial(cfg, th)) == comparable(kept_by_pytest.read_trial(cfg, th))


def test_the_failure_list_is_kept_and_never_read_as_a_record(tmp_path: Path) -> None:
    cfg = _cells(["ft"])[0]
    log = FailureLog(tmp_path)
    log.add(cfg, "WorkerCrashedError: gone", engine="ray", attempts=3)
    again = FailureLog(tmp_path)
    assert again.cells[cfg.config_hash]["reason"] == "WorkerCrashedError: gone"
    records, problems = load_records([tmp_path])
    assert records == [] and problems == []
    again.clear(cfg)
    assert FailureLog(tmp_path).cells == {}


def test_progress_counts_and_time_left() -> None:
    p = Progress(total=10, engine="ray", stream=io.StringIO())
    p.reused, p.done, p.running, p.failed = 2, 2, 2, 1
    p.cell_seconds = [30.0, 30.0]
    assert p.queued == 3
    assert p.time_left(slots=2) == pytest.approx(30.0 * 5 / 2)
    line = p.line(2)
    assert "done 2 (+2 reused" in line and "running 2" in line and "queued 3" in line and "failed 1" in line
    assert "left ~1m15s" in line


@pytest.mark.parametrize("argv, needle", [
    (["grid", "--tier", "smoke"], "choose one engine"),
    (["grid", "--tier", "smoke", "--ray-address", "local", "--slurm"], "choose one engine"),
    (["grid", "--tier", "smoke", "--ray-address", "local", "--strategies", "nope"], "nope"),
    (["grid", "--tier", "smoke", "--slurm", "--json"], "grid does not print records"),
])
def test_grid_usage_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
