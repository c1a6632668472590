"""The cluster driver's plan and command line, without an engine: order, reuse, shipped heads, usage errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from medft_bench.__main__ import main
from medft_bench.cluster.failures import FailureLog
from medft_bench.cluster.plan import plan_grid
from medft_bench.cluster.progress import Progress
from medft_bench.cluster.worker import Shipped, ShippedStore
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.store import ResultStore, load_records
from medft_bench.tiers import get_tier


def _cells(strategies: list[str], protocol: str | None = "study") -> list:
    return build_grid(get_tier("smoke"), GridOptions(backbones=["resnet50"], strategies=strategies,
                                                     protocol=protocol))


def test_lp_cells_go_first_and_lp_ft_waits_for_its_own(tmp_path: Path) -> None:
    cells = _cells(["lp_ft", "ft", "lp"])  # LP-FT before LP in the grid's order
    plan = plan_grid(cells, ResultStore(tmp_path))
    order = [j.cfg.strategy for j in plan.jobs]
    assert order[0] == "lp" and order[1:] == ["lp_ft", "ft"]  # otherwise the grid's order
    lp, lp_ft = plan.jobs[0], plan.jobs[1]
    assert lp_ft.needs == {lp.cfg.config_hash} and lp_ft.reuses == (lp.cfg,)
    assert lp.needs == set() and plan.jobs[2].needs == set()


def test_a_tuned_lp_ft_reuses_the_study_lp_cell(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp", "lp_ft"], protocol=None), ResultStore(tmp_path))
    study_lp = next(j for j in plan.jobs if j.cfg.strategy == "lp" and j.cfg.protocol == "study")
    tuned = next(j for j in plan.jobs if j.cfg.strategy == "lp_ft" and j.cfg.protocol == "tuned")
    assert tuned.needs == {study_lp.cfg.config_hash}


def test_without_its_lp_cell_in_the_run_lp_ft_needs_nothing(tmp_path: Path) -> None:
    plan = plan_grid(_cells(["lp_ft"]), ResultStore(tmp_path))
    assert [j.needs for j in plan.jobs] == [set()]  # it ships a stored LP head if one exists, else solves its own
    assert plan.jobs[0].reuses[0].strategy == "lp"


def test_the_shipped_store_serves_only_what_was_shipped() -> None:
    lp, other = _cells(["lp", "ft"])
    head = {"weight": torch.zeros(2, 3)}
    store = ShippedStore([Shipped(lp.config_hash, {"status": "ok"}, head)])
    assert store.lookup(lp) == {"status": "ok"} and store.load_head(lp) is head
    assert store.lookup(other) is None and store.load_head(other) is None
    assert store.read_trial(lp, "x") is None and store.write_trial(lp, {}) is None  # a worker writes nothing


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
])
def test_grid_usage_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err
