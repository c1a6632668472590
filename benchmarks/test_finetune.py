"""Every cell of the tier's grid, run through the engine inside the pytest-benchmark fixture.

    pytest benchmarks --tier=smoke                 # CI: synthetic data, random weights
    pytest benchmarks -k densenet --tier=quick     # real MedMNIST, pretrained weights
    pytest benchmarks -k "lp_ft and pneumonia" --benchmark-json=out.json
"""

from __future__ import annotations

import warnings

import pytest

from medft_bench.config import CellConfig
from medft_bench.gates import WeakResultWarning, learning_gate
from medft_bench.pytest_plugin import CELL_PROPERTY, skip_or_fail
from medft_bench.results.view import RecordView
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome, attempt


class _NoResult(Exception):
    """Carries an outcome without a record out of the benchmark's round, so that pytest-benchmark keeps no
    entry for it (a result computed but not stored does keep its entry, and its ``extra_info``)."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _attempt(cell: CellConfig, env: RunEnv) -> Outcome:
    outcome = attempt(cell, env)
    if outcome.record is None:
        raise _NoResult(outcome)
    return outcome


def test_finetune(cell: CellConfig, benchmark, run_env: RunEnv, pytestconfig: pytest.Config,
                  record_property) -> None:
    try:
        outcome = benchmark.pedantic(_attempt, args=(cell, run_env), rounds=1, iterations=1, warmup_rounds=0)
    except _NoResult as exc:
        outcome = exc.outcome
    # Skipped or failed outside the except clause: inside it, pytest would print the message a second time,
    # after "During handling of the above exception, another exception occurred".
    skip_or_fail(outcome, pytestconfig, record_property)
    info = benchmark.extra_info
    record = outcome.view
    if outcome.kind is Kind.ERROR:  # computed, not stored
        info.update(record_path=None, reused=False, error=outcome.message)
        _extra_info(info, record)
        record_property(CELL_PROPERTY, _summary_row(cell, record, "failed"))
        pytest.fail(outcome.message, pytrace=False)
    info["record_path"] = str(outcome.path)
    info["reused"] = outcome.reused
    _extra_info(info, record)
    row = _summary_row(cell, record, "reused" if outcome.reused else "computed")
    record_property(CELL_PROPERTY, row)
    if outcome.kind is Kind.FAILED:
        pytest.fail(f"{cell.cell_id} failed: {outcome.message} (record: {outcome.path})", pytrace=False)
    if outcome.kind is Kind.DIVERGED:
        row["status"] = "diverged"
        pytest.xfail(f"diverged (recorded in {outcome.path}): {outcome.message}")
    gate = learning_gate(record)
    if gate:  # synthetic data: the pipeline itself is broken
        pytest.fail(f"{cell.cell_id}: {gate} (record: {outcome.path})", pytrace=False)
    if record.weak_result and not record.data["synthetic"]:  # real data: a weak result is a result
        info["weak_result"] = record.weak_result
        row["status"] = "flagged"
        warnings.warn(WeakResultWarning(f"{cell.cell_id}: weak result, no better than the majority class "
                                        f"({record.weak_result}); record: {outcome.path}"), stacklevel=1)


def _summary_row(cell: CellConfig, record: RecordView, status: str) -> dict:
    """What the session summary shows of a cell (plain data: it crosses from xdist workers)."""
    costs, primary = record.costs, record.primary
    peak = costs.get("peak_gpu_allocated_mb") or costs.get("peak_host_rss_mb")
    return {"cell": cell.cell_id, "status": status, "metric": primary,
            "value": record.test.get(primary) if primary else None, "train_s": costs["train_s"],
            "wall_s": costs["wall_s"],
            "peak_mb": peak, "peak_kind": "gpu" if costs.get("peak_gpu_allocated_mb") else "host"}


def _extra_info(info: dict, record: RecordView) -> None:
    info["status"] = record.status
    info["config_hash"] = record.config_hash
    info["synthetic"] = record.data["synthetic"]
    info["protocol"] = record.protocol
    if record.tuning:  # the tuned protocol: the rate chosen on validation; train_s below is the sweep's
        info["chosen_lr"] = record.tuning["chosen_lr"]
    if record.metrics:
        info["primary_metric"] = record.primary
        for split in ("val", "test"):
            for k, v in record.metrics[split].items():
                info[f"{split}_{k}"] = v
    for k in ("train_s", "eval_s", "wall_s", "train_images_per_s", "peak_gpu_allocated_mb",
              "peak_gpu_reserved_mb", "peak_host_rss_mb", "trainable_params", "total_params", "epochs_run"):
        info[k] = record.costs[k]
