"""Issue 29: one rule for what an error means, on every front end. A missing data file skips that cell and the
run goes on, its exit status as for the cells that ran (the CLI, pytest, Slurm's array task, Ray's plan and
report agree); a strategy that does not apply skips too; any other error leaves no record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medft_bench.__main__ import main
from medft_bench.cluster.engine import GridSummary, report
from medft_bench.cluster.plan import Task, plan_grid
from medft_bench.cluster.slurm import run_part
from medft_bench.data import sources
from medft_bench.errors import DataError, DatasetNotFoundError, NotApplicable, ResultsWriteError, WeightsError
from medft_bench.results.store import ResultStore
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, attempt, failure
from medft_bench.tiers import get_tier

REPO = Path(__file__).resolve().parents[2]
MISSING = "bloodmnist"  # its file is made to be missing; pneumoniamnist's is there (synthetic smoke data)
ARGS = ["--tier", "smoke", "--datasets", f"pneumoniamnist,{MISSING}", "--backbones", "resnet18", "--strategies",
        "lp", "--seeds", "0"]


# The same missing file for a pytest subprocess: a plug-in (-p medft_missing_file).
PLUGIN = f"""
from medft_bench.data import sources
from medft_bench.errors import DatasetNotFoundError

_real = sources.data_identity


def _identity(dataset, *args, **kwargs):
    if dataset == {MISSING!r}:
        raise DatasetNotFoundError("{MISSING}_32.npz is missing; get it from https://zenodo.org/")
    return _real(dataset, *args, **kwargs)


sources.data_identity = _identity
"""


def _cells() -> list:
    tier = get_tier("smoke")
    return [tier.cell("pneumoniamnist", 32, "resnet18", "lp", 0), tier.cell(MISSING, 32, "resnet18", "lp", 0)]


@pytest.fixture
def missing_file(monkeypatch: pytest.MonkeyPatch) -> str:
    """``MISSING``'s data file is not there, and cannot be downloaded (as with --no-download and no file)."""
    real = sources.data_identity

    def identity(dataset: str, *args: object, **kwargs: object) -> object:
        if dataset == MISSING:
            raise DatasetNotFoundError(f"{MISSING}_32.npz is missing; get it from https://zenodo.org/")
        return real(dataset, *args, **kwargs)

    monkeypatch.setattr(sources, "data_identity", identity)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return f"{MISSING}_32.npz is missing; get it from https://zenodo.org/"


@pytest.mark.parametrize(("exc", "kind"), [
    (DatasetNotFoundError("no file"), Kind.DATA_MISSING), (NotApplicable("no norm layers"), Kind.NOT_APPLICABLE),
    (DataError("changed while it ran"), Kind.ERROR), (WeightsError("no weights"), Kind.ERROR),
    (ResultsWriteError("disk full", record={"status": "ok"}), Kind.ERROR)])
def test_one_place_says_what_an_error_means(exc: Exception, kind: Kind) -> None:
    out = failure(_cells()[0], exc)
    assert out.kind is kind and out.message == str(exc) and out.kind.skipped == (kind in (Kind.DATA_MISSING,
                                                                                       Kind.NOT_APPLICABLE))
    assert out.record == (exc.record if isinstance(exc, ResultsWriteError) else None)  # shown rather than lost


def test_a_missing_file_skips_its_cell_and_the_run_goes_on_everywhere(
        missing_file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    present, absent = _cells()
    env = RunEnv.at(results, progress=False)
    assert attempt(absent, env).kind is Kind.DATA_MISSING  # no exception: an outcome

    # The CLI: the cell is reported as skipped, the next one runs; exit 0, as the others report a skipped cell.
    rc = main(["run", *ARGS, "--results-dir", str(results), "--progress", "off"])
    out, err = capsys.readouterr()
    assert rc == 0, (out, err)
    assert f"{absent.cell_id}: skipped: {missing_file}" in out.splitlines()
    assert f"{present.cell_id}: ok [SYNTHETIC data]" in out.splitlines()
    assert err.strip().splitlines()[-1].startswith("skipped: 1 of 2 cells (1 data missing)")
    assert ResultStore(results).lookup(attempt(present, env).cfg) is not None

    # pytest: skipped (not failed), the other case passes, exit 0; in a subprocess, the file made missing there by
    # a plug-in (-p medft_missing_file).
    (tmp_path / "medft_missing_file.py").write_text(PLUGIN)
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_") and k != "MEDFT_DATA_ROOT"}
    env_vars.update(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]), OMP_NUM_THREADS="1",
                    HF_HUB_OFFLINE="1", MEDFT_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-p", "medft_missing_file", "-p",
                           "no:cacheprovider", "-rs", *ARGS, "--results-dir", str(results)], cwd=REPO, env=env_vars,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed, 1 skipped" in proc.stdout
    assert any(ln.startswith("SKIPPED") and missing_file in ln for ln in proc.stdout.splitlines())

    # A Slurm array task: the same outcome for the cell, and the task goes on to the next.
    threads = torch.get_num_threads()
    try:
        outcomes = run_part([Task(c) for c in reversed(_cells())], env)
    finally:
        torch.set_num_threads(threads)
    assert [o.kind for o in outcomes] == [Kind.DATA_MISSING, Kind.REUSED]

    # Ray: the driver's plan skips it as it plans (no task), and the run's exit status is 0.
    plan = plan_grid(_cells(), env)
    assert [c.cell_id for c, _ in plan.skipped] == [absent.cell_id] and missing_file in plan.skipped[0][1]
    assert [c.cell_id for c in plan.reused] == [present.cell_id]
    assert report(GridSummary(reused=plan.reused, skipped=plan.skipped)) == 0
    assert f"skipped: {absent.cell_id}: {missing_file}" in capsys.readouterr().err


# -- the CLI on real tiers: every cell of the run reported, none stops it ----------------------------------


def skipped_line(capsys: pytest.CaptureFixture[str], argv: list[str], cells: int = 1) -> str:
    """Run ``main(argv)`` for ``cells`` cells whose data is missing: each skipped, as pytest, Ray and Slurm skip it
    (issue 29), in one line on stdout (the run goes on to the next), a count on stderr, and exit code 1: the run
    measured nothing (issue 42); returns the first line."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 1, (out, err)
    lines = out.strip().splitlines()
    assert len(lines) == cells and all(": skipped: " in ln for ln in lines), out
    assert len(set(ln.partition(": skipped: ")[2] for ln in lines)) == 1  # the same reason for each
    plural = "s" if cells != 1 else ""
    assert err.strip().splitlines()[-2] == (f"skipped: {cells} of {cells} cell{plural} ({cells} data missing); a "
                                            "skipped cell is not a failure (exit status as for the cells that ran)")
    assert err.strip().splitlines()[-1].startswith("nothing was measured: every cell skipped, some for missing data")
    return lines[0]


def test_missing_medmnist_file_gives_download_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    line = skipped_line(capsys, ["run", "--tier", "quick", "--dataset", "pneumoniamnist", "--backbone", "resnet18",
                                 "--strategy", "lp", "--seed", "0", "--results-dir", str(tmp_path / "results"),
                                 "--data-root", str(empty), "--no-download"])
    assert "https://zenodo.org/" in line and "MD5" in line
    assert f"place it at {empty / 'pneumoniamnist.npz'}" in line
    assert not list(empty.iterdir())  # nothing downloaded
    assert not list((tmp_path / "results").rglob("*.json"))  # no record


def test_missing_folder_dataset_gives_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    line = skipped_line(capsys, ["run", "--tier", "full", "--dataset", "chest_xray_pneumonia", "--backbone",
                                 "resnet18", "--strategy", "lp", "--results-dir", str(tmp_path / "results"),
                                 "--data-root", str(empty), "--allow-cpu"], cells=3)  # the tier's three seeds
    assert "https://" in line and f"Place it at {empty / 'chest_xray_pneumonia'}" in line
