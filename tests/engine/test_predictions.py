"""Per-image predictions beside each record: MedMNIST's result format, and exactly the record's metrics."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from medft_bench.errors import RecordError
from medft_bench.metrics import compute_metrics
from medft_bench.results import predictions
from medft_bench.run_env import RunEnv
from medft_bench.runner import run_or_reuse
from tests.helpers import tiny_cell


@pytest.mark.parametrize("strategy", ["ft", "knn"])
def test_the_kept_models_predictions_recompute_the_records_metrics(tmp_path: Path, strategy: str) -> None:
    out = run_or_reuse(tiny_cell("resnet18", strategy), RunEnv.at(tmp_path, progress=False))
    record = out.record
    assert record["status"] == "ok"
    for split in ("val", "test"):
        labels, scores = predictions.load(out.path, record, split)
        assert len(labels) == record["data"]["splits"][split] == record["predictions"]["splits"][split]["images"]
        assert compute_metrics(record["data"]["task"], labels, scores) == record["metrics"][split]


def test_the_files_are_medmnists_result_format(tmp_path: Path) -> None:
    import pandas as pd
    from medmnist.evaluator import getACC, getAUC

    out = run_or_reuse(tiny_cell("resnet18", "lp"), RunEnv.at(tmp_path, progress=False))
    entry = out.record["predictions"]["splits"]["test"]
    # Synthetic data never takes a MedMNIST flag (``medmnist evaluate`` would score it against the real file)
    assert re.fullmatch(r"synthetic-pneumoniamnist_32_test_\[AUC\]\d\.\d{3}_\[ACC\]\d\.\d{3}@seed0\.csv",
                        entry["scores"])
    folder = predictions.folder_for(out.path)
    y_score = pd.read_csv(folder / entry["scores"], index_col=0, header=None).sort_index().values  # as medmnist
    y_true = pd.read_csv(folder / entry["labels"], index_col=0, header=None).sort_index().values
    metrics = out.record["metrics"]["test"]
    assert getAUC(y_true, y_score, "binary-class") == pytest.approx(metrics["auc"], abs=1e-12)
    assert getACC(y_true, y_score, "binary-class") == pytest.approx(metrics["acc"], abs=1e-12)


def test_an_edited_file_is_refused_and_a_rerun_leaves_only_its_own(tmp_path: Path) -> None:
    cfg = tiny_cell("resnet18", "lp")
    out = run_or_reuse(cfg, RunEnv.at(tmp_path, progress=False))
    folder = predictions.folder_for(out.path)
    name = out.record["predictions"]["splits"]["test"]["scores"]
    stale = folder / "pneumoniamnist_test_[AUC]0.500_[ACC]0.500@seed0.csv"
    stale.write_text("0,0.5,0.5\n")  # as an earlier computation with other metrics would have left
    edited = folder / name
    edited.write_text(edited.read_text().replace("0.", "0.9", 1))
    with pytest.raises(RecordError, match="SHA-256 differs"):
        predictions.load(out.path, out.record, "test")
    again = run_or_reuse(cfg, RunEnv.at(tmp_path, progress=False, rerun=True))
    assert predictions.load(again.path, again.record, "test") is not None
    listed = {n for s in again.record["predictions"]["splits"].values() for n in (s["scores"], s["labels"])}
    assert {p.name for p in folder.iterdir()} == listed


def test_scores_round_trip_exactly() -> None:
    rng = np.random.default_rng(0)
    scores = rng.dirichlet(np.ones(3), size=50).astype(np.float32)
    rows = [line.split(",") for line in predictions.score_text(scores).splitlines()]
    back = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32)
    assert np.array_equal(back, scores) and [int(r[0]) for r in rows] == list(range(50))
