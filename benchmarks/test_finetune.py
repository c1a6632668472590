"""Every cell of the tier's grid, run through the engine inside the pytest-benchmark fixture.

    pytest benchmarks --tier=smoke                 # CI: synthetic data, random weights
    pytest benchmarks -k densenet --tier=quick     # real MedMNIST, pretrained weights
    pytest benchmarks -k "lp_ft and pneumonia" --benchmark-json=out.json
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medft_bench.config import CellConfig
from medft_bench.errors import DataError, DatasetNotFoundError, MedftError, NotApplicable
from medft_bench.gates import learning_gate
from medft_bench.runner import run_or_reuse


def test_finetune(cell: CellConfig, benchmark, results_dir: Path, pytestconfig: pytest.Config) -> None:
    opt = pytestconfig.getoption
    try:
        outcome = benchmark.pedantic(
            run_or_reuse, args=(cell, results_dir),
            kwargs={"rerun": opt("--rerun"), "data_root": opt("--data-root"), "download": not opt("--no-download")},
            rounds=1, iterations=1, warmup_rounds=0,
        )
    except (DatasetNotFoundError, NotApplicable) as exc:
        pytest.skip(str(exc))
    except (DataError, MedftError) as exc:
        pytest.fail(str(exc), pytrace=False)
    record = outcome.record
    info = benchmark.extra_info
    info["record_path"] = str(outcome.path)
    info["reused"] = outcome.reused
    info["status"] = record["status"]
    info["config_hash"] = record["config_hash"]
    info["synthetic"] = record["data"]["synthetic"]
    if record["metrics"]:
        info["primary_metric"] = record["metrics"]["primary"]
        for split in ("val", "test"):
            for k, v in record["metrics"][split].items():
                info[f"{split}_{k}"] = v
    for k in ("train_s", "eval_s", "wall_s", "train_images_per_s", "peak_gpu_allocated_mb",
              "peak_gpu_reserved_mb", "peak_host_rss_mb", "trainable_params", "total_params", "epochs_run"):
        info[k] = record["costs"][k]
    if record["status"] == "failed":
        pytest.fail(f"{cell.cell_id} failed: {record['error']} (record: {outcome.path})", pytrace=False)
    if record["status"] == "diverged":
        pytest.xfail(f"diverged (recorded in {outcome.path}): {record['error']}")
    problem = learning_gate(record)
    if problem:
        pytest.fail(f"{cell.cell_id}: {problem} (record: {outcome.path})", pytrace=False)
