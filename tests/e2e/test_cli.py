"""The command line: ``python -m medft_bench run`` prints a summary and the record's path, reuses on the next
run, and turns bad input (unknown names, missing weights) into one ``error:`` line with exit code 2; a cell whose
data file is missing is skipped, as on every front end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from medft_bench.__main__ import main
from medft_bench.data.sources import dataset_names
from medft_bench.results.store import ResultStore, load_records, read_record
from medft_bench.run_env import RunEnv
from medft_bench.strategies.registry import strategy_names
from medft_bench.tiers import TIERS, get_tier
from tests.helpers import SMOKE_CELL, offline

REPO = Path(__file__).resolve().parents[2]
CELL = SMOKE_CELL


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    offline(monkeypatch)


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


def test_missing_weights_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(results), "--weights", "/nonexistent"])
    assert "/nonexistent" in line and "weights" in line
    assert not results.exists()  # refused before any cell ran


def test_list_strategies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "strategies"]) == 0
    names = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert names == strategy_names()
    assert len(names) == 16 and {"ft", "lp", "lp_ft", "knn", "lora"} <= set(names)


# -- issue 13: bad input is refused before any cell runs, in one line --------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-size", "-3"], "--batch-size -3 is out of range: use a whole number >= 1"),
    (["--batch-size", "0"], "--batch-size 0 is out of range: use a whole number >= 1"),
    (["--epochs", "0"], "--epochs 0 is out of range: use a whole number >= 1"),
    (["--epochs", "-2"], "--epochs -2 is out of range: use a whole number >= 1"),
    (["--max-train-samples", "0"], "--max-train-samples 0 is out of range: use a whole number >= 1"),
    (["--max-train-samples", "-1"], "--max-train-samples -1 is out of range: use a whole number >= 1"),
    (["--img-size", "0"], "--img-size 0 is out of range: use a whole number from 8 to 1024"),
    (["--img-size", "-4"], "--img-size -4 is out of range: use a whole number from 8 to 1024"),
    (["--tier", "quick", "--img-size", "30"], "MedMNIST has no 30 px files; available sizes: 28, 64, 128, 224"),
    (["--lr", "nan"], "--lr nan is out of range: use a finite number > 0"),
    (["--lr", "-1"], "--lr -1.0 is out of range: use a finite number > 0"),
    (["--lr", "inf"], "--lr inf is out of range: use a finite number > 0"),
    (["--seed", "-1"], "--seed(s) -1 is out of range: use a whole number from 0 to 4294967295"),
    (["--param", "foo=1"], "bad strategy parameters (--param): strategy 'lp' has no parameter(s) ['foo']; valid: l2"),
    (["--backbone", "x/../../escaped"], "unknown backbone 'x/../../escaped'; valid names: "),
    (["--param", "solver=sgd"], "lp: solver must be one of ('lbfgs', 'adam'), got 'sgd'"),
    (["--weights", "/nonexistent"], "weights path /nonexistent does not exist"),
    # issue 27, item 11: k=0 voted over no neighbour (NaN), k=-1 failed in torch.topk, each as a failed record
    (["--strategy", "knn", "--param", "k=0"], "bad strategy parameters (--param): kNN k must be a whole number >= 1"),
    (["--strategy", "knn", "--param", "k=-1"], "kNN k must be a whole number >= 1 (the neighbours that vote), got -1"),
    (["--device", "foo"], "--device 'foo' is not a device: use cpu, cuda, cuda:N or mps"),  # was torch's traceback
    (["--device", "meta"], "--device 'meta' is not a device"),
    (["--img-size", "1000000000"], "--img-size 1000000000 is out of range: use a whole number from 8 to 1024"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_number_name_or_parameter_is_refused_before_any_cell(args: list[str], message: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(results), *args])
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing ran, nothing was created anywhere


@pytest.mark.parametrize(("device", "unavailable", "message"), [
    ("cuda", "cuda", "--device cuda: no CUDA GPU is available here; use --device cpu"),
    ("cuda:3", "cuda", "--device cuda:3: no CUDA GPU is available here"),
    ("mps", "mps", "--device mps: Apple's MPS is not available here; use --device cpu"),
])
def test_device_not_on_this_machine_is_one_error_line(device: str, unavailable: str, message: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27, item 11: torch failed inside the first cell with a traceback ("Found no NVIDIA driver")."""
    import torch

    monkeypatch.setattr(torch.cuda if unavailable == "cuda" else torch.backends.mps, "is_available", lambda: False)
    line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(tmp_path / "results"), "--device", device])
    assert line == f"error: {message}" or line.startswith(f"error: {message}")
    assert not (tmp_path / "results").exists()


def test_huge_image_size_of_a_folder_dataset_is_one_error_line(tmp_path: Path, folder_registry: None) -> None:
    """Issue 27, item 11: --img-size 1000000000 on a folder dataset was numpy's "array is too big" traceback."""
    from PIL import Image

    for cls in ("benign", "malignant"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (16, 16)).save(tmp_path / "d" / cls / f"{i}.png")
    proc = cli("run", "--dataset", "mine", "--backbone", "resnet18", "--strategy", "lp", "--folder-dataset",
               f"mine={tmp_path / 'd'},channels=1,modality=ultrasound", "--img-size", "1000000000", "--results-dir",
               str(tmp_path / "r"))  # modality given: no warning of its own on stderr
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "error: --img-size 1000000000 is out of range: use a whole number from 8 to 1024"


def test_escape_sequences_in_a_file_name_do_not_reach_the_terminal(tmp_path: Path, folder_registry: None,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 27, item 12: a file name (or a modality) with ESC sequences was printed raw (clear-screen)."""
    from PIL import Image

    from medft_bench.__main__ import _columns

    for cls in ("benign", "malignant"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (16, 16)).save(tmp_path / "d" / cls / f"{i}.png")
    (tmp_path / "d" / "benign" / "x\x1b[2J.png").write_bytes(b"not an image")
    line = one_error_line(capsys, ["run", "--dataset", "mine", "--backbone", "resnet18", "--strategy", "lp",
                                   "--img-size", "16", "--folder-dataset", f"mine={tmp_path / 'd'},channels=1",
                                   "--results-dir", str(tmp_path / "r")])
    assert "\x1b" not in line and "x\\x1b[2J.png: cannot read the image" in line
    assert _columns([("mine", "x-ray\x1b]8;;http://evil\x07")], ("dataset", "modality")).splitlines()[1] == \
        "mine     x-ray\\x1b]8;;http://evil\\x07"


def test_hub_backbone_name_stays_inside_the_results_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    name = "hf-hub:medft-test/no-such-model"  # timm's hub names hold '/': offline, the hub is out of reach
    line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(results), "--backbone", name])
    assert f"cannot load {name} from the Hugging Face hub" in line
    created = [p for p in tmp_path.rglob("*")]
    assert created and all(p == results or results in p.parents for p in created)
    (lock,) = (results / ".locks").iterdir()
    assert lock.name.startswith("smoke-pneumoniamnist-32-hf-hub_medft-test_no-such-model-lp-seed0__")


@pytest.fixture
def odd_backbones() -> Iterator[None]:
    """Backbones registered under names holding '/', ':' and '..': timm's resnet18 built through them."""
    import timm

    from medft_bench.models.factory import _BUILDERS, register_backbone

    names = ("org/model", "x/../../escaped", "hf-hub:org/model")
    for name in names:
        register_backbone(name, head_prefix="fc", hub_loader=lambda m: {})(
            lambda n: timm.create_model("resnet18", num_classes=n))
    yield
    for name in names:
        _BUILDERS.pop(name)


@pytest.mark.usefixtures("odd_backbones")
@pytest.mark.parametrize("name", ["org/model", "x/../../escaped", "hf-hub:org/model"])
def test_any_backbone_name_gives_safe_file_names(name: str, tmp_path: Path) -> None:
    from medft_bench.runner import run_or_reuse
    from tests.helpers import tiny_cell

    results = tmp_path / "a" / "b" / "results"  # x/../../escaped would land in tmp_path/a
    cfg = tiny_cell(backbone=name, strategy="lp")
    out = run_or_reuse(cfg, RunEnv.at(results))
    assert out.path.parent == results / "unit" and out.path.is_file() and out.path.with_suffix(".head.pt").is_file()
    assert "/" not in out.path.name and ":" not in out.path.name
    record = read_record(out.path)
    assert record["cell"]["backbone"] == name and record["cell_id"] == cfg.cell_id and record["status"] == "ok"
    assert all(results in p.parents for p in tmp_path.rglob("*") if p.is_file())
    assert run_or_reuse(cfg, RunEnv.at(results)).reused  # found again under its safe name


# -- issue 13, item 8: a results directory that cannot be written ------------------------------------------


def test_results_dir_that_cannot_be_created_is_one_line_before_computing(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(tmp_path / "file" / "results")])
    assert line.startswith(f"error: cannot write to the results directory {tmp_path / 'file' / 'results'} (")
    assert "choose a writable --results-dir" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_results_dir_is_one_line_before_computing(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o555)
    try:
        line = one_error_line(capsys, ["run", *CELL, "--results-dir", str(results)])
    finally:
        results.chmod(0o755)
    assert "cannot write to the results directory" in line and "Permission denied" in line


def test_records_are_reused_without_write_access(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from medft_bench.errors import ResultsWriteError
    from medft_bench.results.store import ResultStore

    results = tmp_path / "results"
    assert main(["run", *CELL, "--results-dir", str(results)]) == 0
    capsys.readouterr()

    def read_only(self, cfg):  # what claim() says of a directory it cannot write
        raise ResultsWriteError(f"cannot write to the results directory {self.root} (Read-only file system)")

    monkeypatch.setattr(ResultStore, "claim", read_only)
    assert main(["run", *CELL, "--results-dir", str(results)]) == 0
    assert "ok (reused)" in capsys.readouterr().out.splitlines()[0]
    line = one_error_line(capsys, ["run", *CELL, "--seed", "1", "--results-dir", str(results)])
    assert "Read-only file system" in line  # a cell to compute: refused before computing


def test_full_disk_keeps_the_result_on_screen_and_leaves_no_orphan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    from medft_bench import io

    real_fsync = io._fsync

    def full(path: Path) -> None:  # the record's temporary file is written in part when the disk fills
        if path.name.startswith(".") and ".json." in path.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_fsync(path)

    monkeypatch.setattr(io, "_fsync", full)
    results = tmp_path / "results"
    rc = main(["run", *CELL, "--results-dir", str(results)])
    out, err = capsys.readouterr()
    assert rc == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("error: cannot write the record ") and "(No space left on device)" in line
    assert "computed but is not stored" in line
    assert "test: acc " in out and "record: not written" in out  # the computed result is shown, not lost
    assert [p.name for p in results.rglob("*") if p.is_file() and p.parent.name != ".locks"] == []  # no .head.pt


# -- issue 13, item 3: reuse requires the same data ---------------------------------------------------------

QUICK = ["run", "--tier", "quick", "--dataset", "pneumoniamnist", "--backbone", "resnet18", "--strategy", "lp",
         "--weights", "random", "--epochs", "1"]


def _npz(root: Path, seed: int) -> Path:
    """A small file in MedMNIST's format under MedMNIST's own name (other seeds: other images)."""
    from medft_bench.data.synthetic import write_synthetic_medmnist

    return write_synthetic_medmnist("pneumoniamnist", 28, root, {"train": 32, "val": 16, "test": 16}, seed)


def _run_cell(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[bool, Path]:
    """Run one cell in this process: (reused, record path)."""
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    return "(reused)" in out[0], Path(out[-1].split("record: ", 1)[1])


def test_reuse_requires_the_same_medmnist_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from medft_bench.data.medmnist import md5sum

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _npz(a, 0), _npz(b, 1)
    argv = [*QUICK, "--results-dir", str(tmp_path / "results")]
    reused, rec_a = _run_cell(capsys, [*argv, "--data-root", str(a)])
    assert not reused
    reused, rec_b = _run_cell(capsys, [*argv, "--data-root", str(b)])  # another data root holding other data
    assert not reused and rec_b != rec_a and rec_a.is_file()
    assert _run_cell(capsys, [*argv, "--data-root", str(a)]) == (True, rec_a)
    shutil.copytree(b, c)  # the same file elsewhere is the same data
    assert _run_cell(capsys, [*argv, "--data-root", str(c)]) == (True, rec_b)
    _npz(a, 2)  # the file changed in place: a new record, and the old one stays
    reused, rec_a2 = _run_cell(capsys, [*argv, "--data-root", str(a)])
    assert not reused and rec_a2 not in (rec_a, rec_b) and rec_a.is_file()
    for rec, root in ((rec_a2, a), (rec_b, b)):
        assert read_record(rec)["data"]["md5"] == md5sum(root / "pneumoniamnist.npz")
    assert load_records([tmp_path / "results"])[1] == []


def test_reuse_requires_the_same_folder_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                folder_registry: None) -> None:
    import numpy as np
    from PIL import Image

    for folder, offset in (("one", 0), ("two", 40)):
        rng = np.random.default_rng(offset)
        for c, cls in enumerate(("benign", "malignant")):
            for i in range(12):
                img = np.clip(rng.normal(60 + offset + 100 * c, 20, (16, 16)), 0, 255).astype(np.uint8)
                (tmp_path / folder / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(tmp_path / folder / cls / f"{i}.png")
    argv = ["run", "--dataset", "mine", "--backbone", "resnet18", "--strategy", "lp", "--results-dir",
            str(tmp_path / "results")]
    assert main([*argv, "--folder-dataset", f"mine={tmp_path / 'one'},channels=1"]) == 0
    out = capsys.readouterr().out.splitlines()  # issue 13, item 9: its images' own size, and said so
    assert out[0].startswith("own-mine-16-resnet18-lp-seed0: ok")  # issue 42: the own data's group, not smoke's
    assert out[1] == "  data: mine at 16 px: its images' own size (at most 224); --img-size sets another"
    one = Path(out[-1].split("record: ", 1)[1])
    reused, two = _run_cell(capsys, [*argv, "--folder-dataset", f"mine={tmp_path / 'two'},channels=1"])
    assert not reused and two != one and one.is_file()  # re-pointed: other data, a record of its own
    assert _run_cell(capsys, [*argv, "--folder-dataset", f"mine={tmp_path / 'one'},channels=1"]) == (True, one)
    fingerprints = {read_record(p)["data"]["fingerprint"] for p in (one, two)}
    assert len(fingerprints) == 2


# -- issue 14, item 1: progress --------------------------------------------------------------------------


def test_plain_progress_is_one_line_per_epoch_and_a_count_per_cell(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from medft_bench.training.progress import subscribe

    events = []
    unsubscribe = subscribe(events.append)
    try:
        rc = main(["run", "--tier", "smoke", "--datasets", "pneumoniamnist", "--backbones", "resnet18",
                   "--strategies", "ft,knn", "--epochs", "2", "--progress", "plain", "--results-dir",
                   str(tmp_path / "results")])
    finally:
        unsubscribe()
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    lines = err.splitlines()
    ft, knn = (f"smoke-pneumoniamnist-32-resnet18-{s}-seed0" for s in ("ft", "knn"))
    assert lines[0] == f"cell 1/2 {ft} · none finished · time left unknown"
    assert lines[1].startswith(f"{ft}  train epoch 1/2  loss ") and " val balanced_acc " in lines[1]
    assert lines[2].startswith(f"{ft}  train epoch 2/2  loss ") and lines[2].endswith(" ~0:00 left")
    assert lines[3].startswith(f"cell 2/2 {knn} · 1 computed · ~") and lines[3].endswith(" left (est.)")
    assert len(lines) == 4  # kNN trains no epoch
    assert [(e.title, e.stage, e.epoch, e.epochs) for e in events] == [(ft, "train", 1, 2), (ft, "train", 2, 2)]
    assert all(e.loss > 0 and 0 <= e.value <= 1 and e.images_per_s > 0 for e in events)
    assert out.splitlines()[0] == f"{ft}: ok [SYNTHETIC data]"  # stdout holds the summaries only



def test_leaderboard_is_a_subcommand_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["leaderboard", "--help"])
    assert exc.value.code == 0 and "--publish" in capsys.readouterr().out  # the leaderboard's own options
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "leaderboard" in capsys.readouterr().out


def test_download_prepares_and_checks_every_file_a_selection_needs(tmp_path: Path, capsys, monkeypatch) -> None:
    """28.8: one command says whether a tier can run offline, file by file, and the exit code says it too."""
    from medft_bench.data import medmnist as mm

    monkeypatch.delenv(mm.NO_BUNDLED_ENV, raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["download", "--tier", "real", "--no-download", "--data-root", str(empty)]) == 0
    out = capsys.readouterr().out
    assert "ready   data    breastmnist 28 px: bundled with medft-bench: official MD5 verified" in out
    assert "ready   weights tf_efficientnet_lite0 (packaged): loaded from package" in out
    assert "it runs offline" in out
    # a missing file and a file that is not the official one: named, and exit 1
    monkeypatch.setenv("MEDFT_OFFLINE", "1")
    (tmp_path / "pneumoniamnist.npz").write_bytes(b"not the official file")
    rc = main(["download", "--tier", "real", "--datasets", "pneumoniamnist,dermamnist", "--data-root",
               str(tmp_path), "--strategies", "lp", "--no-download"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "MISSING data    dermamnist 28 px" in out and "downloading is off" in out
    assert "MISSING data    pneumoniamnist 28 px" in out and "NOT the official file" in out
    assert "2 of 3 not ready" in out


def test_the_command_lines_warnings_are_one_line_each(tmp_path: Path) -> None:
    """Issue 42: own data's warnings came out in Python's form (the source file and line first, then the
    code line), long and wrapped; the command line says ``warning: <message>``."""
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "tiny" / cls).mkdir(parents=True)
        for i in range(20):
            Image.new("L", (16, 16), 10 * i + (100 if cls == "b" else 0)).save(tmp_path / "tiny" / cls / f"{i}.png")
    done = subprocess.run([sys.executable, "-m", "medft_bench", "run", "--folder-dataset", f"mine={tmp_path / 'tiny'}",
                           "--datasets", "mine", "--strategies", "knn", "--backbones", "resnet18", "--results-dir",
                           str(tmp_path / "results")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "warning" in line.lower()]
    assert any(line.startswith("warning: mine: the val split has 4 images") for line in lines), done.stderr
    assert all(line.startswith("warning: ") for line in lines) and "UserWarning" not in done.stderr, done.stderr
