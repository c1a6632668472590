"""Strategy names as the leaderboard orders and matches them (claims and tables share these)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from medft_bench.vocabulary import STUDY_STRATEGIES

V = TypeVar("V")


def canonical_name(name: str) -> str:
    """Canonical spelling of a strategy name: lower case, '-' as '_' (``LP-FT`` == ``lp_ft``)."""
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def find(names: Iterable[str], name: str) -> str | None:
    """The entry of ``names`` that spells the strategy ``name`` (:func:`canonical_name`), or None."""
    return next((s for s in names if canonical_name(s) == name), None)


def lookup(by_strategy: Mapping[str, V], name: str) -> V | None:
    """The value of the strategy ``name`` in ``by_strategy`` however its key is spelled, or None."""
    key = find(by_strategy, name)
    return None if key is None else by_strategy[key]


def strategy_sort_key(name: str) -> tuple[int, str]:
    """The study's eight first (in its order), then anything else alphabetically."""
    n = canonical_name(name)
    return (STUDY_STRATEGIES.index(n), n) if n in STUDY_STRATEGIES else (len(STUDY_STRATEGIES), n)
