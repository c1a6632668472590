"""The performance benchmarks run only when asked for (``pytest benchmarks -m perf``), never in a tier run.

Without ``perf`` in the ``-m`` expression this folder is not even collected, so a tier run's case counts
(``N/M tests collected``) are those of its grid alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path.name.startswith("test_") and "perf" not in (config.getoption("-m") or ""):
        return True
    return None
