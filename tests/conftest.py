"""Shared test setup: offline, with generated data in a per-session cache."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEDFT_OFFLINE", "1")
os.environ.setdefault("MEDFT_NO_BUNDLED", "1")  # a data root alone; tests of the bundled files unset it
os.environ.setdefault("MEDFT_PROGRESS", "off")  # quiet unit tests; the progress tests ask for it


@pytest.fixture(autouse=True, scope="session")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["MEDFT_CACHE_DIR"] = str(tmp_path_factory.mktemp("medft-cache"))


@pytest.fixture
def folder_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder datasets the test registers are forgotten after it: the registry is restored as it was."""
    from medft_bench.data.folders import registration

    monkeypatch.setattr(registration, "_USER", dict(registration._USER))
