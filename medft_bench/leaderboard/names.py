"""Strategy names as the leaderboard orders and matches them (claims and tables share these)."""

from __future__ import annotations

# The study's eight first (in its order), then anything else alphabetically.
STUDY_ORDER = ("ft", "lp", "gu_first_last", "gu_last_first", "lp_ft", "l1_sp", "l2_sp", "auto_rgn")


def canonical_name(name: str) -> str:
    """Canonical spelling of a strategy name: lower case, '-' as '_' (``LP-FT`` == ``lp_ft``)."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def strategy_sort_key(name: str) -> tuple[int, str]:
    n = canonical_name(name)
    return (STUDY_ORDER.index(n), n) if n in STUDY_ORDER else (len(STUDY_ORDER), n)
