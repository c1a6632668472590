"""A front end started from a Python without medft-bench's dependencies (a bare ``pytest`` or ``python``, not the
project's ``.venv``) says in one line how to run it, instead of a traceback (issue 42, item 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medft_bench import install

REPO = Path(__file__).resolve().parents[2]
pytest_plugins = ["pytester"]


def _bare(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -S -m ARGS`` from the repository: this Python without its site-packages (numpy, torch, sklearn)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-S", "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args", [("medft_bench.leaderboard", "results"), ("medft_bench", "list", "tiers")])
def test_a_front_end_without_its_dependencies_says_how_to_run_it(args: tuple[str, ...]) -> None:
    proc = _bare(*args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"medft-bench is not installed in this Python ({sys.executable}: no module named ")
    assert f"`.venv/bin/python -m {' '.join(args)}`" in line
    assert "scripts/setup.sh" in line or "project's environment" in line


def test_pytest_without_the_engine_says_how_to_run_it(pytester: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(install, "ENGINE_MODULES", ("no_such_module_for_medft", *install.ENGINE_MODULES))
    result = pytester.runpytest_inprocess("-p", "medft_bench.pytest_plugin", "-p", "no:cacheprovider",
                                          "--tier=quick", "-k", "densenet")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text and "Traceback" not in text
    (line,) = [ln for ln in result.errlines if "not installed" in ln]
    assert "no module named 'no_such_module_for_medft'" in line
    assert "`.venv/bin/pytest -p medft_bench.pytest_plugin -p no:cacheprovider --tier=quick -k densenet`" in line


def test_the_message_points_at_an_existing_venv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(install, "VENV", tmp_path / ".venv")
    assert "bash scripts/setup.sh" in install.not_installed("torch", ["pytest", "benchmarks"])
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").touch()
    line = install.not_installed("torch", ["pytest", "benchmarks"])
    assert "setup.sh" not in line and "`.venv/bin/pytest benchmarks`" in line
