"""Where generated files live (synthetic data, decoded folder datasets, converted arrays, feature caches)."""

from __future__ import annotations

import os
from pathlib import Path

from medft_bench.errors import WriteError, cannot_write

CACHE_ENV = "MEDFT_CACHE_DIR"


def cache_dir() -> Path:
    """``$MEDFT_CACHE_DIR``, else ``~/.cache/medft-bench``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "medft-bench")


def cache_write_error(what: str, path: str | os.PathLike[str], exc: BaseException) -> WriteError:
    """A cache file that cannot be written (read-only, full), as one line naming it, the cause and the way out:
    another ``$MEDFT_CACHE_DIR``. What the cache already holds, and every record, is left as it was."""
    return cannot_write(what, path, exc, f"set {CACHE_ENV} to a writable folder with free space (now {cache_dir()})")
