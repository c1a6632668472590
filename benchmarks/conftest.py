"""The benchmark grid as pytest cases: one case per dataset x backbone x strategy x seed of a tier.

The options (``--tier``, ``--datasets``, ...) come from :mod:`medft_bench.options` through the
``medft_bench.pytest_plugin`` plugin (loaded by the repository's root ``conftest.py``); this file turns them into
parametrised cases with readable ids.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.options import build_cells, check_device
from medft_bench.tiers import Tier

TRIALS_MODULE = "test_tuning_trials.py"
_GRID = pytest.StashKey[tuple[Tier, list[CellConfig]]]()


def _grid(config: pytest.Config) -> tuple[Tier, list[CellConfig]]:
    """The tier and its cells, built once; a bad option is a usage error (exit code 4), not a traceback."""
    if _GRID not in config.stash:
        try:
            check_device(config.option.device)
            config.stash[_GRID] = build_cells(config.option)
        except MedftError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[_GRID]


def pytest_sessionstart(session: pytest.Session) -> None:
    # Validated here: a UsageError raised while collecting would be reported as a collection error.
    _grid(session.config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which size a folder dataset runs at when ``--img-size`` does not say: its images' own (see the ids)."""
    if config.getoption("img_size") or _GRID not in config.stash:
        return []
    from medft_bench.data.folders import default_size_note, registry

    datasets = sorted({c.dataset for c in config.stash[_GRID][1] if c.dataset in registry()})
    return [f"medft-bench: folder dataset {default_size_note(d)}" for d in datasets]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" in metafunc.fixturenames:
        tier, cells = _grid(metafunc.config)
        marks = [pytest.mark.medft_cell, *(getattr(pytest.mark, m) for m in tier.marks)]
        metafunc.parametrize("cell", [pytest.param(c, id=c.cell_id, marks=marks) for c in cells])
    if "trial" in metafunc.fixturenames:  # test_tuning_trials.py, collected with --trial-tasks only
        from medft_bench.training.tuning import tuning_grid

        tier, cells = _grid(metafunc.config)
        marks = [getattr(pytest.mark, m) for m in tier.marks]
        trials = [(c, lr) for c in cells if c.protocol == "tuned" for lr in tuning_grid(c)]
        metafunc.parametrize("trial", [pytest.param(t, id=f"{t[0].cell_id}-lr{t[1]:g}", marks=marks) for t in trials])


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name == TRIALS_MODULE and not config.getoption("trial_tasks"):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Trials first: pytest-xdist hands items out in this order, so a cell starts after its trials are under way
    # (it waits for a trial another worker holds, then reuses it) instead of running them all itself.
    items.sort(key=lambda item: item.path.name != TRIALS_MODULE)
