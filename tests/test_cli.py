"""The command line: ``python -m medft_bench run`` prints a summary and the record's path, reuses on the next
run, and turns bad input (unknown names, missing data or weights) into one ``error:`` line with exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medft_bench.__main__ import main
from medft_bench.data.sources import dataset_names
from medft_bench.results.store import ResultStore, load_records, read_record
from medft_bench.strategies.registry import strategy_names
from medft_bench.tiers import TIERS, get_tier

REPO = Path(__file__).resolve().parents[1]
CELL = ["--tier", "smoke", "--dataset", "pneumoniamnist", "--backbone", "resnet18", "--strategy", "lp", "--seed", "0"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MEDFT_OFFLINE", "1")
    monkeypatch.delenv("MEDFT_DATA_ROOT", raising=False)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "medft_bench", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Run ``main(argv)`` in this process; it must fail with exit code 2 and exactly one ``error:`` line."""
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_run_prints_summary_and_record_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    cfg = get_tier("smoke").cell("pneumoniamnist", 32, "resnet18", "lp", 0)
    path = ResultStore(results).path_for(cfg)

    proc = cli("run", *CELL, "--results-dir", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{cfg.cell_id}: ok [SYNTHETIC data]"
    assert any(ln.strip().startswith("test: ") and "balanced_acc" in ln for ln in lines)
    assert any(ln.strip().startswith("train ") and "parameters trained" in ln for ln in lines)
    assert lines[-1].strip() == f"record: {path}"
    record = read_record(path)  # valid against the schema
    assert record["config_hash"] == cfg.config_hash and record["status"] == "ok"
    assert load_records([results]) == ([record], [])
    before = path.read_bytes()

    assert main(["run", *CELL, "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{cfg.cell_id}: ok (reused) [SYNTHETIC data]"
    assert out[-1].strip() == f"record: {path}"
    assert path.read_bytes() == before


@pytest.mark.parametrize(("option", "kind", "valid"), [
    ("--dataset", "dataset", dataset_names()),
    ("--backbone", "backbone", ["vgg19", "timm"]),
    ("--strategy", "strategy", strategy_names()),
    ("--tier", "tier", list(TIERS)),
])
def test_unknown_name_is_one_error_line(option: str, kind: str, valid: list[str], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", *CELL, "--results-dir", str(tmp_path / "results")]
    argv[argv.index(option) + 1] = "nope"
    line = one_error_line(capsys, argv)
    assert line.startswith(f"error: unknown {kind} 'nope'; valid names: ")
    for name in valid:
        assert name in line
    assert not list((tmp_path / "results").rglob("*.json"))  # no record written


def test_error_from_the_command_line_has_no_traceback(tmp_path: Path) -> None:
    proc = cli("run", "--tier", "smoke", "--dataset", "pneumoniamnist", "--backbone", "resnet18", "--strategy",
               "nope", "--results-dir", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: unknown strategy 'nope'; valid names: ")


def test_missing_medmnist_file_gives_download_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    line = one_error_line(capsys, ["run", "--tier", "quick", "--dataset", "pneumoniamnist", "--backbone", "resnet18",
                                   "--strategy", "lp", "--seed", "0", "--results-dir", str(tmp_path / "results"),
                                   "--data-root", str(empty), "--no-download"])
    assert "https://zenodo.org/" in line and "MD5" in line
    assert f"place it at {empty / 'pneumoniamnist.npz'}" in line
    assert not list(empty.iterdir())  # nothing downloaded


def test_missing_folder_dataset_gives_instructions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    line = one_error_line(capsys, ["run", "--tier", "full", "--dataset", "chest_xray_pneumonia", "--backbone",
                                   "resnet18", "--strategy", "lp", "--results-dir", str(tmp_path / "results"),
                                   "--data-root", str(empty)])
    assert "https://" in line and f"Place it at {empty / 'chest_xray_pneumonia'}" in line


def test_missing_weights_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(results), "--weights", "/nonexistent"])
    assert "/nonexistent" in line and "weights" in line
    assert load_records([results]) == ([], [])


def test_list_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "strategies"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert names == strategy_names()
    assert len(names) == 15 and {"ft", "lp", "lp_ft", "knn", "lora"} <= set(names)
