"""Cells a cluster run could not produce a record for (a worker lost after its retries, bad input found on
a worker, a record that could not be written), kept in ``RESULTS_DIR/.grid-failures.json``.

A cell that fails inside training gets a record with status ``failed``, as on the pytest path; this list is
for the failures that leave no record. A cell is taken off the list when it gets a record. The file's name
starts with a dot, so the leaderboard and the store never read it as a record.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medft_bench.config import CellConfig
from medft_bench.io import atomic_write, read_regular

FILE_NAME = ".grid-failures.json"


class FailureLog:
    def __init__(self, results_dir: str | os.PathLike[str]) -> None:
        self.path = Path(results_dir) / FILE_NAME
        self.cells: dict[str, dict[str, Any]] = {}
        try:
            loaded = json.loads(read_regular(self.path))
            if isinstance(loaded, dict) and isinstance(loaded.get("cells"), dict):
                self.cells = loaded["cells"]
        except (OSError, ValueError):
            pass  # none yet, or unreadable: started afresh (it is a report, not a record)

    def add(self, cfg: CellConfig, reason: str, *, engine: str, attempts: int) -> None:
        self.cells[cfg.config_hash] = {"cell_id": cfg.cell_id, "tier": cfg.tier, "reason": reason, "engine": engine,
                                       "attempts": attempts, "at": datetime.now(timezone.utc).isoformat()}
        self._save()

    def clear(self, cfg: CellConfig) -> None:
        if self.cells.pop(cfg.config_hash, None) is not None:
            self._save()

    def _save(self) -> None:
        atomic_write(self.path, json.dumps({"cells": self.cells}, indent=1, sort_keys=True) + "\n")
