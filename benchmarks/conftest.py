"""The benchmark grid as pytest cases: one case per dataset x backbone x strategy x seed of a tier.

Options (``--tier``, ``--datasets``, ...) live in the ``medft_bench.pytest_plugin`` plugin so that they
work from the repository root; this file turns them into parametrised cases with readable ids.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.grid import GridOptions, build_grid, parse_shard, parse_splits
from medft_bench.tiers import Tier, get_tier


def _csv(config: pytest.Config, name: str, cast: type = str) -> list | None:
    value = config.getoption(name)
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()] if value else None
    except ValueError:
        raise MedftError(f"{name} {value!r}: expected comma-separated {cast.__name__} values") from None


def grid_from_options(config: pytest.Config) -> list[CellConfig]:
    opt = config.getoption
    train = {k: v for k, v in {"epochs": opt("--epochs"), "batch_size": opt("--batch-size"),
                               "max_train_samples": opt("--max-train-samples")}.items() if v is not None}
    from medft_bench.config import parse_lr_grid

    opts = GridOptions(
        datasets=_csv(config, "--datasets"), backbones=_csv(config, "--backbones"),
        strategies=_csv(config, "--strategies"), seeds=_csv(config, "--seeds", int),
        img_sizes=_csv(config, "--img-size", int),
        weights=opt("--weights"), train=train, shard=parse_shard(opt("--shard")) if opt("--shard") else None,
        synthetic=parse_splits(opt("--synthetic")) if opt("--synthetic") is not None else None,
        protocol=opt("--protocol"), lr_grid=parse_lr_grid(opt("--lr-grid")) if opt("--lr-grid") else None,
    )
    return build_grid(get_tier(opt("--tier")), opts)


_GRID = pytest.StashKey[tuple[Tier, list[CellConfig]]]()


def _grid(config: pytest.Config) -> tuple[Tier, list[CellConfig]]:
    """The tier and its cells, built once; a bad option is a usage error (exit code 4), not a traceback."""
    if _GRID not in config.stash:
        try:
            config.stash[_GRID] = (get_tier(config.getoption("--tier")), grid_from_options(config))
        except MedftError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[_GRID]


def pytest_sessionstart(session: pytest.Session) -> None:
    # Validated here: a UsageError raised while collecting would be reported as a collection error.
    _grid(session.config)


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which size a folder dataset runs at when ``--img-size`` does not say: its images' own (see the ids)."""
    if config.getoption("--img-size") or _GRID not in config.stash:
        return []
    from medft_bench.data.folders import default_size_note, registry

    datasets = sorted({c.dataset for c in config.stash[_GRID][1] if c.dataset in registry()})
    return [f"medft-bench: folder dataset {default_size_note(d)}" for d in datasets]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "cell" not in metafunc.fixturenames:
        return
    tier, cells = _grid(metafunc.config)
    marks = [getattr(pytest.mark, m) for m in tier.marks]
    params = [pytest.param(c, id=c.cell_id, marks=marks) for c in cells]
    metafunc.parametrize("cell", params)


@pytest.fixture(scope="session")
def results_dir(pytestconfig: pytest.Config) -> Path:
    return Path(pytestconfig.getoption("--results-dir"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available() or config.getoption("--allow-cpu"):
        return
    skip = pytest.mark.skip(reason="needs CUDA (tier marked gpu); pass --allow-cpu to run it on the CPU anyway")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
