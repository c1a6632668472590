"""The tuned protocol's trials as cases of their own (``--trial-tasks``): each trains one learning rate of a tuned
cell and keeps it next to the cell's record; the cell's case then chooses among the kept trials.

    pytest benchmarks --tier=smoke --protocol tuned --trial-tasks -n 4
"""

from __future__ import annotations

import pytest

from medft_bench.config import CellConfig
from medft_bench.pytest_plugin import skip_or_fail
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, attempt_trial


def test_tuning_trial(trial: tuple[CellConfig, float], run_env: RunEnv, pytestconfig: pytest.Config) -> None:
    cell, lr = trial
    outcome = attempt_trial(cell, lr, run_env)
    skip_or_fail(outcome, pytestconfig)
    if outcome.kind is Kind.FAILED:
        pytest.fail(f"{outcome.label}: {outcome.message}", pytrace=False)
    if outcome.kind is Kind.DIVERGED:
        pytest.xfail(f"{outcome.label} diverged: {outcome.message}")
