"""Strategies by name, including those that other packages add through the ``medft_bench.strategies``
entry-point group (``name = "package.module:StrategyClass"``)."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from medft_bench.errors import MedftError, UnknownNameError, unknown
from medft_bench.strategies.base import Strategy

ENTRY_POINT_GROUP = "medft_bench.strategies"
BUILTIN_MODULES = ("finetune", "gradual", "lp_ft", "starting_point", "auto_rgn", "auto_snr", "surgical",
                   "llrd", "sparse", "lora", "knn")

_REGISTRY: dict[str, type[Strategy]] = {}
_loaded = False


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"strategy name {cls.name!r} is taken by {_REGISTRY[cls.name].__module__}")
    _REGISTRY[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN_MODULES:
        try:
            importlib.import_module(f"medft_bench.strategies.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"medft_bench.strategies.{mod}":
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:
            raise MedftError(f"strategy plug-in {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if isinstance(obj, type) and issubclass(obj, Strategy):
            if obj.name != ep.name:
                raise MedftError(f"strategy plug-in {ep.value} is named {obj.name!r} but registered as {ep.name!r}")
            register_strategy(obj)


def strategy_names() -> list[str]:
    """Registered names: the built-in order first, then plug-ins alphabetically."""
    _load()
    return list(_REGISTRY)


def get_strategy(name: str) -> type[Strategy]:
    _load()
    if name not in _REGISTRY:
        raise unknown("strategy", name, list(_REGISTRY))
    return _REGISTRY[name]


def strategy_identity(name: str) -> tuple[dict[str, Any], int]:
    """A registered strategy's defaults and version, what a cell's identity includes (``config.CellConfig.identity``,
    through ``config.install_strategy_lookup``); ({}, 0) for a name the registry does not know (refused before any
    cell runs, but a configuration can be described without it)."""
    try:
        cls = get_strategy(name)
    except UnknownNameError:
        return {}, 0
    return dict(cls.defaults), int(cls.version)


def create_strategy(name: str, **params: Any) -> Strategy:
    return get_strategy(name)(**params)
