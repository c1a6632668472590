"""Published reference numbers (``references.json``): numbers others measured under their own protocols.

They are shown only in their own, clearly labelled section and never enter this suite's means, ranks,
deltas or claims.
"""

from __future__ import annotations

import functools
import json
from importlib.resources import files
from typing import Any

TITLE = "Published reference numbers (not measured by this suite)"


@functools.lru_cache(maxsize=1)
def load_references() -> dict[str, Any]:
    return json.loads(files("medft_bench.leaderboard").joinpath("references.json").read_text())


def sources(datasets: set[str] | None = None) -> list[dict[str, Any]]:
    """The reference tables; with ``datasets``, only per-dataset tables, cut to those datasets."""
    out = []
    for src in load_references()["sources"]:
        keys = [c[0] for c in src["columns"]]
        if datasets is None:
            out.append(src)
        elif "dataset" in keys:
            rows = [r for r in src["rows"] if r["dataset"] in datasets]
            if rows:
                out.append({**src, "rows": rows})
    return out


def format_value(value: Any, decimals: int) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{decimals}f}"
    return "" if value is None else str(value)
