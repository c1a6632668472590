"""The tuned protocol's trials as cases of their own (``--trial-tasks``): each trains one learning rate of a tuned
cell and keeps it next to the cell's record; the cell's case then chooses among the kept trials.

    pytest benchmarks --tier=smoke --protocol tuned --trial-tasks -n 4
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medft_bench.config import CellConfig
from medft_bench.errors import DatasetNotFoundError, MedftError, NotApplicable
from medft_bench.runner import run_trial_or_reuse


def test_tuning_trial(trial: tuple[CellConfig, float], results_dir: Path, pytestconfig: pytest.Config) -> None:
    cell, lr = trial
    opt = pytestconfig.getoption
    problem: MedftError | None = None
    try:
        summary = run_trial_or_reuse(cell, lr, results_dir, rerun=opt("rerun"), data_root=opt("data_root"),
                                     download=not opt("no_download"), device=opt("device"),
                                     progress=opt("progress"))
    except MedftError as exc:
        problem = exc
    if isinstance(problem, NotApplicable) or (isinstance(problem, DatasetNotFoundError)
                                              and not opt("require_data")):
        pytest.skip(str(problem))
    if problem is not None:
        pytest.fail(str(problem), pytrace=False)
    if summary["status"] == "failed":
        pytest.fail(f"{cell.cell_id} lr={lr:g}: {summary['error']}", pytrace=False)
    if summary["status"] == "diverged":
        pytest.xfail(f"{cell.cell_id} lr={lr:g} diverged: {summary['error']}")
