"""What a front end says when it runs in a Python without medft-bench's dependencies (a bare ``pytest`` or
``python`` instead of the project's ``.venv``): one line naming this Python, the missing module and the command
that works, instead of a traceback. Standard library only: it must import where nothing else does."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
SETUP = "bash scripts/setup.sh"
# What the benchmark's pytest plugin needs before any cell runs (the engine, the benchmark fixture); checked by
# name without importing them (find_spec), so that a session that has them pays nothing.
ENGINE_MODULES = ("torch", "timm", "pytest_benchmark")


def is_missing_dependency(exc: ModuleNotFoundError) -> bool:
    """A third-party module is missing (not one of medft-bench's own, which would be a bug, not the setup)."""
    return bool(exc.name) and exc.name.partition(".")[0] != "medft_bench"


def not_installed(module: str, command: Sequence[str]) -> str:
    """The one line: which Python lacks what, and how to run ``command`` (``["pytest", "benchmarks", ...]``)
    with the project's environment."""
    program, *args = command
    venv_cmd = shlex.join([f".venv/bin/{program}", *args])
    how = (f"run it with the project's environment: `{venv_cmd}`" if (VENV / "bin" / "python").exists()
           else f"run `{SETUP}` (it creates .venv), then `{venv_cmd}`")
    return f"medft-bench is not installed in this Python ({sys.executable}: no module named {module!r}): {how}"


def missing_module(modules: Sequence[str]) -> str | None:
    """The first of ``modules`` this Python cannot import, or None."""
    return next((m for m in modules if find_spec(m) is None), None)


@contextmanager
def exit_if_not_installed(command: Sequence[str]) -> Iterator[None]:
    """Around a front end's ``main``: a missing dependency prints :func:`not_installed` and exits with status 2."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if not is_missing_dependency(exc):
            raise
        print(not_installed(str(exc.name), command), file=sys.stderr)
        raise SystemExit(2) from None
