"""Shared test setup: offline, with generated data in a per-session cache; each test marked with its lane.

The lanes are the folders under tests/ (docs/running.md, "Checking the suite itself"): ``unit`` (pure logic,
records, the leaderboard, config, docs; never imports torch), ``engine`` (builds or trains networks with torch on
tiny data) and ``e2e`` (runs the CLI or pytest in subprocesses, cluster engines, advise, places)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEDFT_OFFLINE", "1")
os.environ.setdefault("MEDFT_NO_BUNDLED", "1")  # a data root alone; tests of the bundled files unset it
os.environ.setdefault("MEDFT_PROGRESS", "off")  # quiet unit tests; the progress tests ask for it


LANES = ("unit", "engine", "e2e")
TESTS = Path(__file__).resolve().parent


def lane_of(path: Path) -> str | None:
    """The lane of a test file: the folder under tests/ it sits in (None outside tests/ or at its top)."""
    try:
        parts = path.resolve().relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in LANES else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``-m unit``, ``-m engine``, ``-m e2e``: every test carries its folder's marker."""
    for item in items:
        if (lane := lane_of(Path(str(item.path)))) is not None:
            item.add_marker(getattr(pytest.mark, lane))


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["MEDFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("medft-cache"))


@pytest.fixture
def folder_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder datasets the test registers are forgotten after it: the registry is restored as it was."""
    from medft_bench.data.folders import registration

    monkeypatch.setattr(registration, "_USER", dict(registration._USER))
