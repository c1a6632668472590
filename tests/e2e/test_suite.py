"""The benchmark suite end to end, on the smoke tier's tiny corner (resnet18 x lp,knn, one epoch): id selection,
records and reuse, --rerun, resume after a SIGKILL, two runs sharing one results directory, sharding, skips
with instructions, xdist, and bad options.

Runs that need a process of their own (killed runs, concurrent runs, xdist) are ``python -m pytest benchmarks``
subprocesses; the others run in this process through ``pytester``, which spares each one the seconds of
importing torch, timm and scikit-learn again.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medft_bench.config import CellConfig
from medft_bench.errors import MedftError
from medft_bench.grid import GridOptions, build_grid, in_shard, parse_shard
from medft_bench.results.record import _validator
from medft_bench.results.store import ResultStore, load_records, read_record
from medft_bench.strategies.registry import strategy_names
from medft_bench.tiers import get_tier

pytest_plugins = ["pytester"]

# pytester's in-process runs forget the modules they were first to import, and an extension module such as torch
# imported a second time crashes the process (a segfault): everything the suite's cells use is imported here, once.
importlib.import_module("timm")
for _module in ("medft_bench.data.folders", "medft_bench.gates", "medft_bench.runner", "medft_bench.training.engine",
                "medft_bench.training.tuning"):
    importlib.import_module(_module)
_validator()
strategy_names()

REPO = Path(__file__).resolve().parents[2]
TINY = ["--backbones", "resnet18", "--strategies", "lp,knn", "--epochs", "1"]
TIMEOUT = 600  # a hung lock or run fails the test instead of hanging the suite

# A plug-in for the subprocess (-p medft_killpoint): at one point of a cell it touches $MEDFT_TEST_MARK and then
# sleeps, so that the test can SIGKILL the run exactly there; or it delays every computed cell ("slow").
KILLPOINT = textwrap.dedent('''
    import os
    import time

    from medft_bench.training import engine

    MODE = os.environ.get("MEDFT_TEST_KILLPOINT", "")
    MARK = os.environ.get("MEDFT_TEST_MARK", "")


    def _hold():
        open(MARK, "w").close()
        time.sleep(600)


    if MODE == "train":  # after one real training epoch, before validation: mid-cell
        _train_epoch = engine.Trainer.train_epoch

        def train_epoch(self, *args, **kwargs):
            out = _train_epoch(self, *args, **kwargs)
            _hold()
            return out

        engine.Trainer.train_epoch = train_epoch
    elif MODE == "rename":  # the record's temporary file is written, the rename has not happened
        _replace = os.replace

        def replace(src, dst, *args, **kwargs):
            name = os.path.basename(str(dst))
            if name.endswith(".json") and "__" in name and os.path.basename(str(src)).startswith("."):
                _hold()
            return _replace(src, dst, *args, **kwargs)

        os.replace = replace
    elif MODE == "slow":  # every computed cell takes a few seconds longer: concurrent runs overlap
        from medft_bench.training import tuning

        _sweep = tuning.sweep

        def sweep(*args, **kwargs):
            time.sleep(float(os.environ.get("MEDFT_TEST_DELAY", "3")))
            return _sweep(*args, **kwargs)

        tuning.sweep = sweep
''')


def tiny_grid() -> list[CellConfig]:
    return build_grid(get_tier("smoke"), GridOptions(backbones=["resnet18"], strategies=["lp", "knn"],
                                                     train={"epochs": 1}))


def tail(text: str, n: int = 4000) -> str:
    return text[-n:]


def bench_json(path: Path) -> dict[str, dict[str, Any]]:
    """pytest-benchmark's JSON: {cell id: {"extra_info": ..., "stats": ...}}."""
    data = json.loads(path.read_text())
    out = {}
    for b in data["benchmarks"]:
        assert b["name"].startswith("test_finetune[") and b["name"].endswith("]"), b["name"]
        out[b["name"][len("test_finetune["):-1]] = b
    return out


def record_files(results: Path) -> list[str]:
    """Record file names (the store's own files; dot-prefixed temporary files excluded)."""
    return sorted(p.name for p in results.rglob("*.json") if not p.name.startswith("."))


def assert_one_valid_record_per_cell(results: Path, cells: list[CellConfig]) -> list[dict[str, Any]]:
    records, problems = load_records([results])
    assert problems == [], problems
    assert len(records) == len(cells)
    store = ResultStore(results)
    assert record_files(results) == sorted(store.path_for(c).name for c in cells)
    by_hash = {r["config_hash"]: r for r in records}
    for c in cells:
        rec = by_hash[c.config_hash]
        assert rec["cell_id"] == c.cell_id and rec["status"] == "ok", (c.cell_id, rec["status"], rec["error"])
        assert rec["metrics"] and rec["finished"] >= rec["started"]
        assert store.lookup(c) == rec
    return [by_hash[c.config_hash] for c in cells]


# -- running the suite -----------------------------------------------------------------------------------


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "benchmarks", "-p", "no:cacheprovider", *args]


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """For subprocesses: offline, this session's data cache, none of the outer pytest's (xdist) variables, and
    one thread per run (the runs share a small machine, where spinning OpenMP threads cost more than they give)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "MEDFT_"))}
    e.update(HF_HUB_OFFLINE="1", MEDFT_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
             MEDFT_CACHE_DIR=os.environ["MEDFT_CACHE_DIR"])  # set by tests/conftest.py
    return e


@pytest.fixture(scope="module")
def killpoint_env(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    plugin_dir = tmp_path_factory.mktemp("plugin")
    (plugin_dir / "medft_killpoint.py").write_text(KILLPOINT)
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), env.get("PYTHONPATH")]))}


Run = Callable[..., pytest.RunResult]


@pytest.fixture
def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Run:
    """``pytest benchmarks ARGS`` in this process (one torch thread while it runs)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MEDFT_OFFLINE", "1")
    monkeypatch.delenv("MEDFT_DATA_ROOT", raising=False)
    for name in [k for k in os.environ if k.startswith("PYTEST_XDIST_")]:  # when these tests run under xdist:
        monkeypatch.delenv(name)  # pytest-benchmark would turn itself off in the inner run

    def run(*args: str) -> pytest.RunResult:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return pytester.runpytest_inprocess(str(REPO / "benchmarks"), "-p", "no:cacheprovider", *args)
        finally:
            torch.set_num_threads(threads)

    return run


def output(result: pytest.RunResult) -> str:
    return tail(result.stdout.str() + "\n" + result.stderr.str())


@pytest.fixture(scope="module")
def xdist_run(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """An ``-n 2`` run of the tiny grid, started in the background when the module's first test begins."""
    root = tmp_path_factory.mktemp("xdist")
    with open(root / "log", "w") as log:
        proc = subprocess.Popen(pytest_cmd("-n", "2", *TINY, "--results-dir", str(root / "results")), cwd=REPO,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield root, proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


pytestmark = pytest.mark.usefixtures("xdist_run")


# -- 5. sharding -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["smoke", "standard"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_shards_partition_the_grid(tier: str, n: int) -> None:
    grid = [c.cell_id for c in build_grid(get_tier(tier))]
    assert len(grid) == len(set(grid))
    shards = [[c.cell_id for c in build_grid(get_tier(tier), GridOptions(shard=(i, n)))] for i in range(1, n + 1)]
    assert all(shards), [len(s) for s in shards]
    assert sum(len(s) for s in shards) == len(grid)  # no overlap
    assert set().union(*shards) == set(grid)  # nothing lost
    for i, s in enumerate(shards, 1):  # a cell's shard depends on its id only, in the grid's order
        assert [cid for cid in grid if in_shard(cid, (i, n))] == s


def test_a_backbone_subset_applies_only_without_explicit_strategies() -> None:
    """The smoke tier runs VGG-19 on FT, LP and kNN only (its cells cost several times the others'), every other
    backbone on every strategy; --strategies names what every backbone runs, VGG-19 included."""
    tier = get_tier("smoke")
    grid = build_grid(tier)
    per_backbone = {b: [c.strategy for c in grid if c.backbone == b] for b in tier.backbones}
    assert per_backbone["vgg19"] == [s for s in strategy_names() if s in ("ft", "lp", "knn")]
    assert per_backbone["resnet50"] == per_backbone["densenet121"] == list(strategy_names())
    picked = build_grid(tier, GridOptions(strategies=["l2_sp", "lp"]))
    assert sorted((c.backbone, c.strategy) for c in picked) == sorted(
        (b, s) for b in tier.backbones for s in ("l2_sp", "lp"))


def test_parse_splits() -> None:
    from medft_bench.grid import parse_splits

    assert parse_splits("") == {} and parse_splits("train=48, test=24") == {"train": 48, "test": 24}
    for bad in ("train=0", "train=x", "train=\u00b2", "dev=3", "train", "train=-1"):
        with pytest.raises(MedftError, match="--synthetic"):
            parse_splits(bad)


def test_parse_shard() -> None:
    assert parse_shard("1/1") == (1, 1) and parse_shard("2/4") == (2, 4) and parse_shard("4/4") == (4, 4)
    for bad in ("0/2", "3/2", "x", "1/0", "1-2", "", "1/2/3", "-1/2"):
        with pytest.raises(MedftError, match="--shard"):
            parse_shard(bad)


def test_shard_option_collects_the_shard(run: Run) -> None:
    expected = sorted(c.cell_id for c in build_grid(get_tier("smoke"), GridOptions(shard=(2, 3))))
    result = run("--collect-only", "-q", "--shard", "2/3")
    assert result.ret == 0, output(result)
    got = sorted(ln.split("[", 1)[1][:-1] for ln in result.outlines if ln.startswith("benchmarks/"))
    assert got == expected and 0 < len(got) < len(build_grid(get_tier("smoke")))


@pytest.mark.parametrize("protocol", [None, "study", "tuned", "both"])
def test_protocol_option_collects_its_cells(run: Run, protocol: str | None) -> None:
    """Default: the study's cells, no cell nobody asked for; both: the study's cells plus the tier's tuned ones
    (smoke: FT and LP-FT on ResNet-50, FT on VGG-19; VGG-19's L2-SP only when selected, as it is not in
    VGG-19's default subset);
    --protocol X: every cell under X, the tuned ones with '-tuned' in their ids (study ids as they were)."""
    args = () if protocol is None else ("--protocol", protocol)
    result = run("--collect-only", "-q", *args)
    assert result.ret == 0, output(result)
    got = sorted(ln.split("[", 1)[1][:-1] for ln in result.outlines if ln.startswith("benchmarks/"))
    study = sorted(c.cell_id for c in build_grid(get_tier("smoke"), GridOptions(protocol="study")))
    tuned = [cid for cid in got if "-tuned-" in cid]
    if protocol == "both":
        assert tuned == ["smoke-pneumoniamnist-32-resnet50-ft-tuned-seed0",
                         "smoke-pneumoniamnist-32-resnet50-lp_ft-tuned-seed0",
                         "smoke-pneumoniamnist-32-vgg19-ft-tuned-seed0"]
        assert sorted(set(got) - set(tuned)) == study
    elif protocol in (None, "study"):
        assert got == study and not tuned
    else:
        assert got == tuned and sorted(cid.replace("-tuned", "") for cid in got) == study


# -- 1. id selection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "keep"), [
    ("densenet", lambda c: c.backbone == "densenet121"),
    ("lp_ft and pneumonia", lambda c: c.strategy == "lp_ft" and c.dataset == "pneumoniamnist"),
    ("not vgg19", lambda c: c.backbone != "vgg19"),
])
def test_k_selects_the_expected_cells(run: Run, expr: str, keep: Callable[[CellConfig], bool]) -> None:
    grid = build_grid(get_tier("smoke"))
    expected = sorted(f"benchmarks/test_finetune.py::test_finetune[{c.cell_id}]" for c in grid if keep(c))
    assert 0 < len(expected) < len(grid)
    result = run("--collect-only", "-q", "-k", expr)
    assert result.ret == 0, output(result)
    assert sorted(ln for ln in result.outlines if ln.startswith("benchmarks/")) == expected
    assert f"{len(expected)}/{len(grid)} tests collected" in result.stdout.str()
    if expr == "densenet":  # ids read as the docs say
        assert "benchmarks/test_finetune.py::test_finetune[smoke-pneumoniamnist-32-densenet121-lp_ft-seed0]" in expected
        assert len(expected) == len(strategy_names())


# -- 8. bad options --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message", "valid"), [
    (("--tier=nope",), "unknown tier 'nope'; valid names:", ("full", "quick", "smoke", "standard")),
    (("--strategies", "lp,nope"), "unknown strategy 'nope'; valid names:", None),
    (("--shard", "3/2"), "--shard '3/2'", ()),
    (("--seeds", "x"), "--seeds 'x'", ()),
    (("--synthetic=train=x",), "--synthetic 'train=x'", ()),
    (("--synthetic", "--tier=full", "--datasets", "ham10000"), "ham10000 is a folder dataset", ()),
    (("--folder-dataset", "mine"), "--folder-dataset 'mine': expected NAME=PATH", ()),
    (("--batch-size", "-3"), "--batch-size -3 is out of range: use a whole number >= 1", ()),
    (("--batch-size", "0"), "--batch-size 0 is out of range: use a whole number >= 1", ()),
    (("--epochs", "0"), "--epochs 0 is out of range: use a whole number >= 1", ()),
    (("--epochs", "-2"), "--epochs -2 is out of range: use a whole number >= 1", ()),
    (("--max-train-samples", "0"), "--max-train-samples 0 is out of range: use a whole number >= 1", ()),
    (("--max-train-samples", "-1"), "--max-train-samples -1 is out of range: use a whole number >= 1", ()),
    (("--img-size", "0"), "--img-size 0 is out of range: use a whole number from 8 to 1024", ()),
    (("--img-size", "-4"), "--img-size -4 is out of range: use a whole number from 8 to 1024", ()),
    (("--seeds", "0,-1"), "--seed(s) -1 is out of range: use a whole number from 0 to 4294967295", ()),
    (("--backbones", "resnet18,foo/bar"), "unknown backbone 'foo/bar'; valid names:", ("vgg19", "timm")),
    (("--weights", "/nonexistent"), "weights path /nonexistent does not exist", ()),
    (("--protocol", "nope"), "unknown protocol 'nope'; use one of", ("study", "tuned")),
    (("--lr-grid", "1e-3"), "--lr-grid applies to the tuned protocol only", ()),
    (("--protocol", "tuned", "--lr-grid", "0,1e-3"), "--lr-grid '0,1e-3': expected finite learning rates", ()),
    (("--device", "foo"), "--device 'foo' is not a device: use cpu, cuda, cuda:N or mps", ()),  # issue 27, item 11
    (("--img-size", "1000000000"), "--img-size 1000000000 is out of range: use a whole number from 8 to 1024", ()),
    (("--strategies", "knn", "--param", "k=0"), "kNN k must be a whole number >= 1", ()),
], ids=["tier", "strategies", "shard", "seeds", "synthetic-splits", "synthetic-folder", "folder-dataset",
        "batch-size-negative", "batch-size-zero", "epochs-zero", "epochs-negative", "max-train-samples-zero",
        "max-train-samples-negative", "img-size-zero", "img-size-negative", "seed-negative", "backbone",
        "weights", "protocol", "lr-grid-study", "lr-grid-zero", "device-foo", "img-size-huge", "knn-k-zero"])
def test_bad_option_is_a_usage_error(run: Run, args: tuple[str, ...], message: str, valid: Any) -> None:
    result = run("--collect-only", "-q", *args)
    text = output(result)
    assert result.ret == 4, text  # pytest's usage-error exit code
    assert "Traceback" not in text and "ERROR collecting" not in text, text
    (line,) = [ln for ln in result.errlines if ln.startswith("ERROR:")]
    assert message in line
    for name in strategy_names() if valid is None else valid:
        assert name in line


def test_device_without_a_gpu_is_a_usage_error(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27, item 11: --device cuda without a GPU failed inside every case with torch's traceback."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = run("--collect-only", "-q", "--device", "cuda")
    text = output(result)
    assert result.ret == 4 and "Traceback" not in text, text
    (line,) = [ln for ln in result.errlines if ln.startswith("ERROR:")]
    assert "--device cuda: no CUDA GPU is available here; use --device cpu" in line


def test_weights_that_do_not_fit_fail_the_case_in_one_line(run: Run, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "resnet18.safetensors"
    save_file({"foo": torch.zeros(1)}, str(weights))
    result = run("--backbones", "resnet18", "--strategies", "lp", "--weights", str(weights),
                 "--results-dir", str(tmp_path / "results"))
    text = output(result)
    assert result.ret == 1, text
    result.assert_outcomes(failed=1)
    assert "Traceback" not in text and "During handling" not in text, text
    (line,) = [ln for ln in result.outlines if ln.startswith(f"the weights in {weights} do not fit resnet18")]
    assert "1 unexpected (foo)" in line
    assert load_records([tmp_path / "results"]) == ([], [])  # no record: nothing was trained


def test_weights_directory_per_backbone(run: Run, tmp_path: Path) -> None:
    """--weights DIR: the backbone with its file there runs on it; the other fails in one line naming the files
    it would accept (and -k can leave it out)."""
    from safetensors.torch import save_file

    from medft_bench.models import create_backbone

    weights = tmp_path / "weights"
    weights.mkdir()
    sd = create_backbone("resnet18", 1000, "random").model.state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, str(weights / "resnet18.a1_in1k.safetensors"))
    args = ("--backbones", "resnet18,resnet34", "--strategies", "lp", "--epochs", "1", "--weights", str(weights),
            "--results-dir", str(tmp_path / "results"))
    result = run(*args)
    text = output(result)
    result.assert_outcomes(passed=1, failed=1)
    assert "During handling" not in text and "Traceback" not in text, text
    (line,) = [ln for ln in result.outlines if ln.startswith("no weights for resnet34.a1_in1k in ")]
    assert "accepted names: resnet34.a1_in1k.safetensors, " in line
    (rec,), _ = load_records([tmp_path / "results"])
    assert rec["weights"]["source"] == "file" and rec["weights"]["tensors_loaded"] == len(sd) - 2
    assert rec["weights"]["file"] == str(weights / "resnet18.a1_in1k.safetensors")
    assert run(*args, "-k", "not resnet34").ret == 0


def test_full_disk_fails_the_case_and_keeps_its_numbers(run: Run, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from medft_bench import io

    real_fsync = io._fsync

    def full(path: Path) -> None:  # the record's temporary file cannot be flushed to a full disk
        if path.name.startswith(".") and ".json." in path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_fsync(path)

    monkeypatch.setattr(io, "_fsync", full)  # the in-process run shares this module
    results = tmp_path / "results"
    result = run("--backbones", "resnet18", "--strategies", "lp", "--epochs", "1", "--results-dir", str(results),
                 "--benchmark-json", str(tmp_path / "out.json"))
    text = output(result)
    assert result.ret == 1 and "Traceback" not in text, text
    (line,) = [ln for ln in result.outlines if ln.startswith("cannot write the record ")]
    assert "(No space left on device)" in line and "computed but is not stored" in line
    (cell,) = build_grid(get_tier("smoke"), GridOptions(backbones=["resnet18"], strategies=["lp"],
                                                        train={"epochs": 1}))
    extra = bench_json(tmp_path / "out.json")[cell.cell_id]["extra_info"]
    assert extra["record_path"] is None and extra["status"] == "ok" and 0 <= extra["test_auc"] <= 1
    assert [p for p in results.rglob("*") if p.is_file() and p.parent.name != ".locks"] == []  # no orphaned head


# -- 6. skips with instructions, not tracebacks ----------------------------------------------------------


def _skip_reason(result: pytest.RunResult, ret: int = 0) -> str:
    """The one cell's skip reason; ``ret`` 1 where its data is missing (a run that measured nothing fails)."""
    text = output(result)
    assert result.ret == ret, text
    result.assert_outcomes(skipped=1)
    assert "Traceback" not in text, text
    (line,) = [ln for ln in result.outlines if ln.startswith("SKIPPED")]
    return line


def test_missing_folder_dataset_skips_with_instructions(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    reason = _skip_reason(run("-rs", "--tier=full", "--allow-cpu", "--datasets", "chest_xray_pneumonia",
                              "--backbones", "resnet18", "--strategies", "lp", "--seeds", "0",
                              "--data-root", str(empty), "--results-dir", str(tmp_path / "results")), ret=1)
    assert "chest_xray_pneumonia" in reason
    assert "https://" in reason  # where to get it
    assert f"Place it at {empty / 'chest_xray_pneumonia'}" in reason  # the expected path
    assert not (tmp_path / "results").exists()  # skipped before anything was created


def test_missing_medmnist_file_skips_with_download_instructions(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    reason = _skip_reason(run("-rs", "--tier=quick", "--datasets", "pneumoniamnist", "--backbones", "resnet18",
                              "--strategies", "lp", "--data-root", str(empty), "--no-download",
                              "--results-dir", str(tmp_path / "results")), ret=1)
    assert "https://zenodo.org/" in reason and "pneumoniamnist.npz" in reason
    assert str(empty / "pneumoniamnist.npz") in reason
    assert not list(empty.iterdir())  # nothing downloaded


def test_gpu_tier_on_cpu_skips_without_allow_cpu(run: Run, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available: the gpu marker does not skip here")
    reason = _skip_reason(run("-rs", "--tier=standard", "--datasets", "pneumoniamnist", "--backbones", "resnet18",
                              "--strategies", "lp", "--img-size", "64", "--seeds", "684",
                              "--results-dir", str(tmp_path / "results")))
    assert "needs CUDA" in reason and "--allow-cpu" in reason
    assert not (tmp_path / "results").exists()  # nothing ran


# -- tiers on generated data, and the user's own folder dataset -----------------------------------------


def test_synthetic_option_runs_a_real_tier_on_generated_data(run: Run, tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run("--tier=standard", "--allow-cpu", "--synthetic", "train=48,val=16,test=24", "--datasets",
                 "bloodmnist", "--img-size", "64", "--backbones", "resnet18", "--strategies", "lp",
                 "--seeds", "684", "--weights", "random", "--epochs", "1", "--results-dir", str(results))
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=1)
    (rec,), problems = load_records([results])
    assert not problems
    assert rec["cell_id"] == "standard-bloodmnist-64-resnet18-lp-seed684"
    assert rec["config"]["synthetic"] is True and rec["data"]["synthetic"] is True
    assert [rec["data"]["splits"][k] for k in ("train", "val", "test")] == [48, 16, 24]


def test_folder_dataset_option_runs_the_users_data(run: Run, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 8)):
        for c, cls in enumerate(("benign", "malignant")):
            for i in range(n):
                img = np.clip(rng.normal(70 + 110 * c, 20, (40, 40)), 0, 255).astype(np.uint8)
                path = tmp_path / "us" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
    results = tmp_path / "results"
    result = run("--folder-dataset", f"mine={tmp_path / 'us'},channels=1,modality=ultrasound", "--datasets", "mine",
                 "--backbones", "resnet18", "--strategies", "knn", "--results-dir", str(results))
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=1)
    # Its images' own size (40 px), not the tier's MedMNIST size, and the header says so.
    assert ("medft-bench: folder dataset mine at 40 px: its images' own size (at most 224); --img-size sets "
            "another") in result.outlines
    (rec,), _ = load_records([results])
    assert rec["cell_id"] == "own-mine-40-resnet18-knn-seed0" and rec["data"]["image_size"] == 40
    assert rec["data"]["source"] == "folder" and rec["data"]["synthetic"] is False
    assert rec["data"]["modality"] == "ultrasound" and rec["config"]["synthetic"] is False


def test_dangling_symlink_in_a_folder_dataset_fails_the_case_in_one_line(run: Run, tmp_path: Path) -> None:
    """Issue 27, item 9: a dangling symlink (or a symlink loop, a name that is not UTF-8) was an INTERNALERROR."""
    from PIL import Image

    for cls in ("benign", "malignant"):
        (tmp_path / "us" / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (16, 16), 60 * i).save(tmp_path / "us" / cls / f"{i}.png")
    (tmp_path / "us" / "benign" / "x.png").symlink_to(tmp_path / "gone.png")
    result = run("--folder-dataset", f"mine={tmp_path / 'us'},channels=1", "--datasets", "mine", "--backbones",
                 "resnet18", "--strategies", "knn", "--results-dir", str(tmp_path / "results"))
    text = output(result)
    assert result.ret == 1 and "INTERNALERROR" not in text and "Traceback" not in text, text
    result.assert_outcomes(failed=1)
    assert f"{tmp_path / 'us' / 'benign' / 'x.png'}: a dangling symlink (No such file or directory)" in text


def test_weak_result_on_real_data_passes_with_a_warning_and_a_flag(run: Run, tmp_path: Path) -> None:
    """Issue 13, item 10: both classes hold the same image, so no model beats the majority class."""
    from PIL import Image

    from medft_bench.leaderboard.aggregate import aggregate
    from medft_bench.leaderboard.load import load_inputs

    img = np.full((24, 24), 128, np.uint8)
    for split, n in (("train", 12), ("test", 6)):
        for cls in ("benign", "malignant"):
            for i in range(n):
                path = tmp_path / "same" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
    results = tmp_path / "results"
    result = run("--folder-dataset", f"same={tmp_path / 'same'},channels=1", "--datasets", "same", "--backbones",
                 "resnet18", "--strategies", "ft", "--results-dir", str(results))
    text = output(result)
    assert result.ret == 0, text
    # the weak result, and the two small splits' warnings (2 validation and 12 test images)
    result.assert_outcomes(passed=1, warnings=3)
    assert "WeakResultWarning: own-same-24-resnet18-ft-seed0: weak result, no better than the majority class" in text
    assert "the val split has 2 images" in text and "the test split has 12 images" in text
    (rec,), _ = load_records([results])
    assert rec["status"] == "ok" and rec["data"]["synthetic"] is False
    assert rec["weak_result"] == "acc 0.500 <= majority 0.500"
    (group,) = aggregate(load_inputs([results]).runs)
    # The leaderboard's flag, with what the record shows of the cause: every image is the same image, so every
    # feature vector points the same way
    assert rec["head"]["feature_cosine"] == pytest.approx(1.0)
    assert [why for row in group.rows for _, why in row.majority] == [
        rec["weak_result"] + "; its features point the same way for every image (mean cosine 1.00)"]


# -- 2. records, reuse, --rerun --------------------------------------------------------------------------


def test_records_reuse_and_rerun(run: Run, tmp_path: Path) -> None:
    results = tmp_path / "results"
    cells = tiny_grid()
    store = ResultStore(results)

    # A run writes one valid record per case.
    result = run(*TINY, "--results-dir", str(results), "--benchmark-json", str(tmp_path / "run1.json"))
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=len(cells))
    first = bench_json(tmp_path / "run1.json")
    assert sorted(first) == sorted(c.cell_id for c in cells)
    assert_one_valid_record_per_cell(results, cells)
    for c in cells:
        extra = first[c.cell_id]["extra_info"]
        assert extra["reused"] is False and extra["status"] == "ok" and extra["config_hash"] == c.config_hash
        assert Path(extra["record_path"]) == store.path_for(c)
    before = {c.cell_id: store.path_for(c).read_bytes() for c in cells}
    started = {c.cell_id: read_record(store.path_for(c))["started"] for c in cells}

    # Running again reuses every record, untouched, and quickly.
    result = run(*TINY, "--results-dir", str(results), "--benchmark-json", str(tmp_path / "run2.json"))
    assert result.ret == 0, output(result)
    second = bench_json(tmp_path / "run2.json")
    assert sorted(second) == sorted(before)
    for c in cells:
        assert second[c.cell_id]["extra_info"]["reused"] is True
        assert store.path_for(c).read_bytes() == before[c.cell_id]
        took, computed = second[c.cell_id]["stats"]["max"], first[c.cell_id]["stats"]["max"]
        assert took < min(2.0, computed / 2), (took, computed)  # a lookup, not a computation
    assert_one_valid_record_per_cell(results, cells)

    # --rerun computes every cell again and replaces its record.
    result = run(*TINY, "--results-dir", str(results), "--rerun", "--benchmark-json", str(tmp_path / "run3.json"))
    assert result.ret == 0, output(result)
    third = bench_json(tmp_path / "run3.json")
    for c, rec in zip(cells, assert_one_valid_record_per_cell(results, cells)):
        assert third[c.cell_id]["extra_info"]["reused"] is False
        assert rec["started"] > started[c.cell_id]


# -- 3. resume after SIGKILL -----------------------------------------------------------------------------


def _run_and_kill(env: dict[str, str], args: list[str], mode: str, mark: Path, log: Path) -> None:
    """Start a run with the kill-point plug-in, wait until it holds at ``mode``, SIGKILL it."""
    with open(log, "w") as out:
        proc = subprocess.Popen(pytest_cmd("-p", "medft_killpoint", *args), cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**env, "MEDFT_TEST_KILLPOINT": mode, "MEDFT_TEST_MARK": str(mark)})
        try:
            deadline = time.monotonic() + TIMEOUT
            while not mark.exists():
                assert proc.poll() is None, f"the run ended before reaching {mode!r}:\n{tail(log.read_text())}"
                assert time.monotonic() < deadline, f"the run never reached {mode!r}"
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    mark.unlink()


def test_resume_after_sigkill(killpoint_env: dict[str, str], run: Run, tmp_path: Path) -> None:
    results = tmp_path / "results"
    args = ["--backbones", "resnet18", "--strategies", "ft", "--epochs", "1", "--results-dir", str(results)]
    (cell,) = build_grid(get_tier("smoke"), GridOptions(backbones=["resnet18"], strategies=["ft"],
                                                        train={"epochs": 1}))
    store = ResultStore(results)
    mark = tmp_path / "reached"

    # Killed mid-training: the cell was claimed, nothing was written.
    _run_and_kill(killpoint_env, args, "train", mark, tmp_path / "train.log")
    assert (results / ".locks" / f"{cell.cell_id}__{cell.config_hash}.lock").is_file()
    assert not store.path_for(cell).exists() and not store.head_path_for(cell).exists()
    assert load_records([results]) == ([], [])

    # Killed between writing the record's temporary file and renaming it: the dot-temp file is never a record.
    _run_and_kill(killpoint_env, args, "rename", mark, tmp_path / "rename.log")
    assert not store.path_for(cell).exists()
    leftovers = [p for p in store.path_for(cell).parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers and all(p.name.startswith(".") for p in leftovers)
    assert load_records([results]) == ([], [])
    assert store.lookup(cell) is None

    # The next run (the dead runs' locks are free) finishes the killed write from its journal (issue 43): the
    # record computed before the kill is kept, whole with its head, not computed again.
    result = run(*args, "--benchmark-json", str(tmp_path / "resume.json"))
    assert result.ret == 0, output(result)
    assert bench_json(tmp_path / "resume.json")[cell.cell_id]["extra_info"]["reused"] is True
    assert not [p for p in store.path_for(cell).parent.iterdir() if p.name.startswith(".")]
    (rec,) = assert_one_valid_record_per_cell(results, [cell])
    assert rec["costs"]["epochs_run"] == 1 and store.load_head(cell) is not None


# -- 4. two runs sharing one results directory -----------------------------------------------------------


def test_concurrent_runs_compute_each_cell_once(killpoint_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    cells = tiny_grid()
    # Each computed cell takes 3 s longer, so the two runs overlap: without the lock, both would compute.
    env = {**killpoint_env, "MEDFT_TEST_KILLPOINT": "slow", "MEDFT_TEST_DELAY": "3"}
    procs, logs = [], []
    for i in range(2):
        logs.append(open(tmp_path / f"run{i}.log", "w"))  # closed below
        procs.append(subprocess.Popen(
            pytest_cmd("-p", "medft_killpoint", *TINY, "--results-dir", str(results),
                       "--benchmark-json", str(tmp_path / f"run{i}.json")),
            cwd=REPO, env=env, stdout=logs[-1], stderr=subprocess.STDOUT))
    try:
        for p in procs:
            p.wait(timeout=TIMEOUT)
    finally:
        for p, log in zip(procs, logs):
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    for i, p in enumerate(procs):
        assert p.returncode == 0, tail((tmp_path / f"run{i}.log").read_text())
    assert_one_valid_record_per_cell(results, cells)
    runs = [bench_json(tmp_path / f"run{i}.json") for i in range(2)]
    for c in cells:
        reused = sorted(r[c.cell_id]["extra_info"]["reused"] for r in runs)
        assert reused == [False, True], (c.cell_id, reused)  # computed exactly once, reused by the other run
        assert {r[c.cell_id]["extra_info"]["config_hash"] for r in runs} == {c.config_hash}
    assert not list(results.rglob("*.tmp"))


# -- 7. xdist --------------------------------------------------------------------------------------------


def test_xdist_run_writes_the_same_records_as_a_serial_run(xdist_run: tuple[Path, Any], run: Run,
                                                           tmp_path: Path) -> None:
    serial = tmp_path / "serial"
    result = run(*TINY, "--results-dir", str(serial))
    assert result.ret == 0, output(result)
    root, proc = xdist_run
    proc.wait(timeout=TIMEOUT)
    log = (root / "log").read_text()
    assert proc.returncode == 0, tail(log)
    assert "2 workers" in log or "created: 2/2 workers" in log, tail(log)
    cells = tiny_grid()
    assert_one_valid_record_per_cell(root / "results", cells)
    assert_one_valid_record_per_cell(serial, cells)
    assert record_files(root / "results") == record_files(serial)
    hashes = [{r["config_hash"] for r in load_records([d])[0]} for d in (root / "results", serial)]
    assert hashes[0] == hashes[1] == {c.config_hash for c in cells}


# -- issue 14, item 2: a run that reads like a benchmark ------------------------------------------------------


def test_session_summary_lists_each_cell_then_the_counts(run: Run, tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run(*TINY, "--results-dir", str(results))
    assert result.ret == 0, output(result)
    lines = result.outlines
    start = lines.index("medft-bench: cells of this session")
    header, *rows = lines[start + 1:start + 4]
    assert header.split() == ["cell", "status", "test", "metric", "train", "s", "peak", "host", "MB"]
    assert sorted(row.split()[0] for row in rows) == sorted(c.cell_id for c in tiny_grid()), rows
    for row in rows:
        assert row.split()[1:3] == ["computed", "balanced_acc"], row
    assert lines[start + 4].strip() == "2 computed (2 cells)"
    assert "Mean" in result.stdout.str() and "StdDev" not in result.stdout.str()  # the suite's benchmark columns

    again = run(*TINY, "--results-dir", str(results)).outlines
    assert again[again.index("medft-bench: cells of this session") + 4].strip() == "2 reused (2 cells)"



def test_progress_shows_without_dash_s(env: dict[str, str], tmp_path: Path) -> None:
    # pytest captures the cells' output at the file-descriptor level (shown only on failure); progress goes through
    # its terminal writer with capture suspended. A subprocess: an in-process pytester run does not capture so.
    args = ["--backbones", "resnet18", "--strategies", "ft", "--epochs", "1", "--results-dir", str(tmp_path)]
    [cell] = [c.cell_id for c in build_grid(get_tier("smoke"), GridOptions(backbones=["resnet18"],
                                                                            strategies=["ft"]))]
    out = subprocess.run(pytest_cmd(*args), cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=TIMEOUT).stdout.splitlines()
    assert f"cell 1/1 {cell} · none finished · time left unknown" in out, out
    assert any(line.startswith(f"{cell}  train epoch 1/1  loss ") for line in out), out
    quiet = subprocess.run(pytest_cmd(*args, "--progress", "off", "--rerun"), cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT).stdout.splitlines()
    assert not any("train epoch" in line or line.startswith("cell 1/1") for line in quiet), quiet


def test_trial_tasks_run_before_their_cell_which_reuses_them(run: Run, tmp_path: Path) -> None:
    """--trial-tasks: each trial of a tuned cell is a case, collected before the cells; the cell chooses among the
    kept trials and runs none of them again (only the chosen one's model is retrained, in its own process)."""
    args = ("--protocol", "tuned", "--backbones", "resnet18", "--strategies", "ft", "--epochs", "1",
            "--lr-grid", "1e-4,1e-3", "--results-dir", str(tmp_path / "results"))
    plain = run("--collect-only", "-q", *args)
    assert not [ln for ln in plain.outlines if "test_tuning_trial" in ln]  # opt-in only
    collected = run("--collect-only", "-q", "--trial-tasks", *args)
    ids = [ln.split("[", 1)[1][:-1] for ln in collected.outlines if ln.startswith("benchmarks/")]
    cell = "smoke-pneumoniamnist-32-resnet18-ft-tuned-seed0"
    assert ids == [f"{cell}-lr0.0001", f"{cell}-lr0.001", cell], ids
    result = run("--trial-tasks", *args)
    assert result.ret == 0, output(result)
    result.assert_outcomes(passed=3)
    (rec,) = load_records([tmp_path / "results"])[0]
    assert [t["resumed"] for t in rec["tuning"]["trials"]] == [True, True]
    assert rec["tuning"]["model"] == "retrained"
    # --rerun with --trial-tasks: the trial cases train again, and the cell reuses those fresh trials instead of
    # training every learning rate a second time
    trials = sorted((tmp_path / "results").rglob("*.trial.json"))
    before = {p: p.stat().st_mtime_ns for p in trials}
    again = run("--trial-tasks", "--rerun", *args)
    assert again.ret == 0, output(again)
    assert all(p.stat().st_mtime_ns > before[p] for p in trials)
    (rec,) = load_records([tmp_path / "results"])[0]
    assert [t["resumed"] for t in rec["tuning"]["trials"]] == [True, True]


def test_grid_config_selects_like_the_options_and_the_command_line_wins(run: Run, tmp_path: Path) -> None:
    """28.8: a grid from a TOML file, with the same options; a flag given on the command line wins."""
    cfg = tmp_path / "grid.toml"
    cfg.write_text('tier = "smoke"\nstrategies = ["knn"]\nbackbones = ["resnet50", "vgg19"]\nseeds = [0, 1]\n'
                   "epochs = 2\n[param]\nk = 5\n")
    result = run("--collect-only", "-q", "--grid-config", str(cfg), "--seeds", "2")
    assert result.ret == 0, output(result)
    got = sorted(ln.split("[", 1)[1][:-1] for ln in result.outlines if ln.startswith("benchmarks/"))
    assert got == ["smoke-pneumoniamnist-32-resnet50-knn-seed2", "smoke-pneumoniamnist-32-vgg19-knn-seed2"]
    cfg.write_text('tier = "smoke"\nepoch = 2\n')  # a typo is named, never ignored
    result = run("--collect-only", "-q", "--grid-config", str(cfg))
    assert result.ret != 0 and "unknown option 'epoch'" in output(result)
    cfg.write_text('seeds = "zero"\n')
    result = run("--collect-only", "-q", "--grid-config", str(cfg))
    assert result.ret != 0 and "expected comma-separated int" in output(result)


def test_grid_config_on_the_command_line(tmp_path: Path) -> None:
    from medft_bench.__main__ import _parser
    from medft_bench.options import apply_grid_config, grid_options

    cfg = tmp_path / "grid.toml"
    cfg.write_text('tier = "real"\ndatasets = ["breastmnist"]\nepochs = 2\nrerun = true\n[param]\nk = 5\n')
    argv = ["run", "--grid-config", str(cfg), "--epochs", "4"]
    args = _parser().parse_args(argv)
    apply_grid_config(args, argv, "cli")
    opts = grid_options(args)
    assert (args.tier, args.rerun, opts.datasets, opts.train["epochs"], opts.params) == (
        "real", True, ["breastmnist"], 4, {"k": 5})
    cfg.write_text("epochs = 2.5\n")
    with pytest.raises(MedftError, match="epochs = 2.5: expected a whole number"):
        apply_grid_config(_parser().parse_args(["run", "--grid-config", str(cfg)]), [], "cli")
    with pytest.raises(SystemExit):  # a shortened name (--epoch) is refused, not parsed and then overridden
        _parser().parse_args(["run", "--epoch", "3"])
    cfg.write_text("[param]\nwhen = 2024-01-01\n")
    with pytest.raises(MedftError, match=r"\[param\] takes numbers"):
        apply_grid_config(_parser().parse_args(["run", "--grid-config", str(cfg)]), [], "cli")


# -- issue 42, item 1: a run says why on its first screen, and once in its summary -----------------------------


def test_a_run_says_why_before_its_cells_and_once_in_its_summary(run: Run, tmp_path: Path) -> None:
    """Weights that do not load and a data file that is missing: each said once before the cells run (the file,
    why, the fix), the repeated failure one line in pytest's FAILURES, and the summary groups the cells by reason."""
    weights, data = tmp_path / "weights", tmp_path / "data"
    weights.mkdir()
    data.mkdir()
    bundled = REPO / "medft_bench" / "data" / "bundled" / "breastmnist.npz"
    (data / "breastmnist.npz").symlink_to(bundled)  # present: its cells reach their weights
    result = run("--tier=quick", "--datasets", "breastmnist,chestmnist", "--backbones", "resnet18", "--strategies",
                 "lp,knn", "--seeds", "0", "--weights", str(weights), "--data-root", str(data), "--no-download",
                 "--results-dir", str(tmp_path / "results"))
    text, lines = output(result), result.outlines
    assert result.ret == 1, text
    result.assert_outcomes(failed=2, skipped=2)
    flat = " ".join(" ".join(ln.split()) for ln in lines)  # the blocks are wrapped to the terminal's width
    why = f"no weights for resnet18.a1_in1k in {weights}"
    before = flat.index("medft-bench: 4 cells of 4 cannot run as things stand (found before any ran):")
    assert before < flat.index("test_finetune.py ")  # before the first cell
    assert flat.index(f"weights resnet18 ({weights}), 2 cells fail: {why}") > before
    skip = flat.index("data chestmnist 28 px, 2 cells skip: MedMNIST chestmnist at 28 px is not available")
    assert "https://zenodo.org/" in flat[skip:skip + 400] and str(data / "chestmnist.npz") in flat[skip:skip + 600]
    # pytest's own short summary repeats the message, cut to the terminal's width except under $CI: not counted
    ours = flat[:flat.index("short test summary info")] + flat[flat.index("medft-bench: cells of this session"):]
    assert ours.count(why) == 3  # before the cells, the first failure, the summary
    assert ours.count("the same error as quick-breastmnist-resnet18-") == 1  # the second failure: one line
    summary = flat.index("medft-bench: cells of this session")
    assert summary > flat.index("FAILED")  # after pytest's short summary: on the last screen
    assert flat[summary:].startswith(f"medft-bench: cells of this session cells status reason 2 failed {why}")
    assert "2 skipped MedMNIST chestmnist at 28 px is not available" in flat[summary:]
    assert "1 data file missing (chestmnist at 28 px)" in flat[summary:]


def test_a_run_whose_every_cell_skipped_for_missing_data_fails(run: Run, tmp_path: Path) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    args = ("--tier=quick", "--datasets", "chestmnist", "--backbones", "resnet18", "--strategies", "lp,knn",
            "--seeds", "0", "--data-root", str(empty), "--no-download", "--results-dir", str(tmp_path / "results"))
    result = run(*args)
    assert result.ret == 1, output(result)
    result.assert_outcomes(skipped=2)
    assert "nothing was measured: every cell skipped, some for missing data, so the run fails (exit status 1)" in (
        " ".join(ln.strip() for ln in result.outlines))
    # A strategy that does not apply is an answer: such a run passes (norm-only on VGG-19 has no norm layer).
    na = run("--tier=smoke", "--backbones", "vgg19", "--strategies", "norm_only", "--seeds", "0", "--synthetic",
             "--results-dir", str(tmp_path / "results"))
    assert na.ret == 0 and na.parseoutcomes().get("skipped"), output(na)
