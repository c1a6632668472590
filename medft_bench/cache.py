"""Where generated files live (synthetic data, decoded folder datasets, converted arrays, feature caches)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MEDFT_CACHE_DIR"


def cache_dir() -> Path:
    """``$MEDFT_CACHE_DIR``, else ``~/.cache/medft-bench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medft-bench")
