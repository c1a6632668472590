"""Every cell of the tier's grid, run through the engine inside the pytest-benchmark fixture.

    pytest benchmarks --tier=smoke                 # CI: synthetic data, random weights
    pytest benchmarks -k densenet --tier=quick     # real MedMNIST, pretrained weights
    pytest benchmarks -k "lp_ft and pneumonia" --benchmark-json=out.json
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from medft_bench.config import CellConfig
from medft_bench.errors import DatasetNotFoundError, MedftError, NotApplicable, ResultsWriteError
from medft_bench.gates import WeakResultWarning, learning_gate
from medft_bench.pytest_plugin import CELL_PROPERTY
from medft_bench.runner import Outcome, run_or_reuse


def _run(cell: CellConfig, results_dir: Path, **kwargs: Any) -> Outcome | ResultsWriteError:
    """``run_or_reuse``; a result computed but not stored comes back as its error, so that the benchmark entry
    (and its ``extra_info``) is kept in the benchmark JSON instead of being dropped with an exception."""
    try:
        return run_or_reuse(cell, results_dir, **kwargs)
    except ResultsWriteError as exc:
        if exc.record is None:
            raise
        return exc


def test_finetune(cell: CellConfig, benchmark, results_dir: Path, pytestconfig: pytest.Config,
                  record_property) -> None:
    opt = pytestconfig.getoption
    problem: MedftError | None = None
    try:
        outcome = benchmark.pedantic(
            _run, args=(cell, results_dir),
            # With --trial-tasks the trials have just run as cases of their own (under --rerun too): reuse them.
            kwargs={"rerun": opt("rerun"), "rerun_trials": opt("rerun") and not opt("trial_tasks"),
                    "data_root": opt("data_root"), "download": not opt("no_download"),
                    "device": opt("device"), "progress": opt("progress")},
            rounds=1, iterations=1, warmup_rounds=0,
        )
    except MedftError as exc:
        problem = exc
    # Skipped or failed outside the except clause: inside it, pytest would print the message a second time,
    # after "During handling of the above exception, another exception occurred".
    if isinstance(problem, DatasetNotFoundError):
        record_property(CELL_PROPERTY, {"cell": cell.cell_id, "missing": f"{cell.dataset}@{cell.img_size}"})
        if opt("require_data"):
            pytest.fail(f"{problem} (--require-data: missing data fails the cell)", pytrace=False)
        pytest.skip(str(problem))
    if isinstance(problem, NotApplicable):
        pytest.skip(str(problem))
    if problem is not None:
        pytest.fail(str(problem), pytrace=False)
    info = benchmark.extra_info
    if isinstance(outcome, ResultsWriteError):
        info.update(record_path=None, reused=False, error=str(outcome))
        _extra_info(info, outcome.record)
        record_property(CELL_PROPERTY, _summary_row(cell, outcome.record, "failed"))
        pytest.fail(str(outcome), pytrace=False)
    record = outcome.record
    info["record_path"] = str(outcome.path)
    info["reused"] = outcome.reused
    _extra_info(info, record)
    row = _summary_row(cell, record, "reused" if outcome.reused else "computed")
    record_property(CELL_PROPERTY, row)
    if record["status"] == "failed":
        pytest.fail(f"{cell.cell_id} failed: {record['error']} (record: {outcome.path})", pytrace=False)
    if record["status"] == "diverged":
        row["status"] = "diverged"
        pytest.xfail(f"diverged (recorded in {outcome.path}): {record['error']}")
    gate = learning_gate(record)
    if gate:  # synthetic data: the pipeline itself is broken
        pytest.fail(f"{cell.cell_id}: {gate} (record: {outcome.path})", pytrace=False)
    if record.get("weak_result") and not record["data"]["synthetic"]:  # real data: a weak result is a result
        info["weak_result"] = record["weak_result"]
        row["status"] = "flagged"
        warnings.warn(WeakResultWarning(f"{cell.cell_id}: weak result, no better than the majority class "
                                        f"({record['weak_result']}); record: {outcome.path}"), stacklevel=1)


def _summary_row(cell: CellConfig, record: dict, status: str) -> dict:
    """What the session summary shows of a cell (plain data: it crosses from xdist workers)."""
    metrics, costs = record["metrics"], record["costs"]
    primary = metrics["primary"] if metrics else None
    peak = costs.get("peak_gpu_allocated_mb") or costs.get("peak_host_rss_mb")
    return {"cell": cell.cell_id, "status": status, "metric": primary,
            "value": metrics["test"].get(primary) if metrics else None, "train_s": costs["train_s"],
            "wall_s": costs["wall_s"],
            "peak_mb": peak, "peak_kind": "gpu" if costs.get("peak_gpu_allocated_mb") else "host"}


def _extra_info(info: dict, record: dict) -> None:
    info["status"] = record["status"]
    info["config_hash"] = record["config_hash"]
    info["synthetic"] = record["data"]["synthetic"]
    info["protocol"] = record["cell"].get("protocol", "study")
    if record.get("tuning"):  # the tuned protocol: the rate chosen on validation; train_s below is the sweep's
        info["chosen_lr"] = record["tuning"]["chosen_lr"]
    if record["metrics"]:
        info["primary_metric"] = record["metrics"]["primary"]
        for split in ("val", "test"):
            for k, v in record["metrics"][split].items():
                info[f"{split}_{k}"] = v
    for k in ("train_s", "eval_s", "wall_s", "train_images_per_s", "peak_gpu_allocated_mb",
              "peak_gpu_reserved_mb", "peak_host_rss_mb", "trainable_params", "total_params", "epochs_run"):
        info[k] = record["costs"][k]
