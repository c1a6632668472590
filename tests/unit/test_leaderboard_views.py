"""The practitioner's views (leaderboard/views.py) and the MLflow export, from small records that keep their
per-image predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medft_bench.leaderboard import bootstrap, views
from medft_bench.leaderboard.publish import publish
from medft_bench.metrics import compute_metrics
from medft_bench.results import predictions
from tests.helpers import make_record, write

N_TEST = 60
STRATEGIES = {"ft": 1.5, "lp": 0.8, "knn": 0.3}  # signal: FT separates the classes best


def _scores(rng: np.random.Generator, y: np.ndarray, signal: float) -> np.ndarray:
    p = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, len(y)))))
    return np.c_[1 - p, p].astype(np.float32)


def _record(root: Path, strategy: str, seed: int, signal: float, epochs: int = 3) -> Path:
    """A breastmnist record whose metrics are those of the predictions kept beside it, with ``epochs``
    validation AUCs that rise."""
    rng = np.random.default_rng(hash((strategy, seed)) % 2**32)
    rec = make_record(tier="real", dataset="breastmnist", backbone="tf_efficientnet_lite0", strategy=strategy,
                      seed=seed)
    y = np.r_[np.zeros(N_TEST // 3, int), np.ones(N_TEST - N_TEST // 3, int)]
    scores, labels = {}, {}
    for split in ("val", "test"):
        scores[split], labels[split] = _scores(rng, y, signal), y
        rec["metrics"][split] = {**compute_metrics("binary-class", y, scores[split]), "map": 0.5}
    rec["metrics"]["primary"] = rec["metrics"]["monitor"] = "auc"
    rec["data"]["modality"] = "ultrasound"
    rec["epochs"] = [{"epoch": e, "stage": "train", "val": {"auc": 0.6 + 0.05 * e + 0.01 * seed}}
                     for e in range(epochs)]
    entry, files = predictions.build("breastmnist", 28, f"seed{seed}", rec["metrics"], scores, labels)
    rec["predictions"] = entry
    path = write(root, rec)
    folder = predictions.folder_for(path)
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return path


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("views")
    for strategy, signal in STRATEGIES.items():
        for seed in (0, 1):
            _record(root / "results", strategy, seed, signal, epochs=1 if strategy == "knn" else 3)
    bootstrap._LOADED.clear()
    pub = publish([root / "results"], out=root / "board")
    return root, pub.out


def test_each_case_gets_its_curves_confusion_and_roc_linked_from_the_pages(board: tuple[Path, Path]) -> None:
    _, out = board
    summary = json.loads((out / "summary.json").read_text())
    (group,) = summary["groups"]
    names = {k: v for k, v in group["plots"].items() if ":" in k}
    assert set(names) == {f"{kind}:breastmnist:tf_efficientnet_lite0" for kind in views.VIEW_KINDS}
    for name in names.values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and name in summary["files"]
        assert name.startswith(group["slug"] + "-breastmnist-tf_efficientnet_lite0-")
    html, md = (out / "leaderboard.html").read_text(), (out / "real.md").read_text()
    for name in names.values():
        assert f'src="{name}"' in html and f"]({name})" in md
    assert "Learning curves — breastmnist, tf_efficientnet_lite0" in html


def test_confusion_and_roc_compare_the_pick_with_the_references(board: tuple[Path, Path]) -> None:
    from medft_bench.leaderboard.aggregate import aggregate
    from medft_bench.leaderboard.load import load_inputs

    root, _ = board
    (group,) = aggregate(load_inputs([root / "results"]).runs)
    (case,) = group.cases
    shown = views.compared(group, case)
    assert shown[0] == views.pick(group, case) and set(shown) == set(STRATEGIES)


def test_per_class_csv_is_sklearns_precision_and_recall_at_the_argmax(board: tuple[Path, Path]) -> None:
    from sklearn.metrics import precision_score, recall_score

    root, out = board
    rows = list(csv.DictReader((out / views.PER_CLASS_CSV).open()))
    assert len(rows) == len(STRATEGIES) * 2 * 2  # records x classes
    row = next(r for r in rows if r["strategy"] == "ft" and r["seed"] == "0" and r["class"] == "0")
    path = Path(row["path"])
    labels, scores = predictions.load(path, json.loads(path.read_text()), "test")
    pred = scores.argmax(1)
    assert float(row["recall"]) == pytest.approx(recall_score(labels, pred, pos_label=0), abs=1e-6)
    assert float(row["precision"]) == pytest.approx(precision_score(labels, pred, pos_label=0), abs=1e-6)
    assert int(row["support"]) == int((labels == 0).sum())


def test_mlflow_export_reads_back_with_mlflows_own_client(board: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # the reader's side: MLflow 3's file store, asked for
    from mlflow.tracking import MlflowClient

    from medft_bench.leaderboard.__main__ import main

    root, _ = board
    uri = (tmp_path / "mlruns").as_uri()
    assert main(["export-mlflow", str(root / "results"), "--tracking-uri", uri]) == 0
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("medft-bench")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == len(STRATEGIES) * 2
    ft = next(r for r in runs if r.data.tags["medft.cell_id"] == "real-breastmnist-tf_efficientnet_lite0-ft-seed1")
    path = Path(ft.data.tags["medft.record"])
    record = json.loads(path.read_text())
    assert ft.info.status == "FINISHED" and ft.data.tags["medft.config_hash"] == record["config_hash"]
    assert ft.data.params["cell.strategy"] == "ft" and ft.data.params["config.train.lr"] == "0.001"
    assert ft.data.metrics["test_auc"] == pytest.approx(record["metrics"]["test"]["auc"])
    history = client.get_metric_history(ft.info.run_id, "epoch_val_auc")
    assert [(m.step, m.value) for m in history] == [(e, pytest.approx(0.61 + 0.05 * e)) for e in range(3)]
    assert [a.path for a in client.list_artifacts(ft.info.run_id)] == [path.name]
    # again: nothing new to log, nothing doubled
    assert main(["export-mlflow", str(root / "results"), "--tracking-uri", uri]) == 0
    assert len(client.search_runs([exp.experiment_id])) == len(STRATEGIES) * 2


def test_the_html_page_keeps_a_wide_tables_first_column_and_wraps_its_links(board: tuple[Path, Path]) -> None:
    """Issue 42, item 4: a wide table scrolled sideways kept no row name in view, and the link bar ran off a
    phone's screen."""
    import re

    _, out = board
    css = (out / "leaderboard.html").read_text().split("<style>", 1)[1].split("</style>", 1)[0]
    sticky = re.search(r"\.scroll th:first-child, \.scroll td:first-child \{([^}]*)\}", css)
    assert sticky and "position: sticky" in sticky.group(1) and "left: 0" in sticky.group(1)
    assert re.search(r"nav \{[^}]*flex-wrap: wrap", css)


def test_on_a_phone_the_contents_fold_to_one_line_and_plots_keep_their_size(board: tuple[Path, Path]) -> None:
    """Issue 42, item 4: at 390 px the link bar and the contents filled the first screen before the answer, and the
    plots shrunk to the width showed ~4 px text."""
    import re

    _, out = board
    html = (out / "leaderboard.html").read_text()
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    phone = re.search(r"@media \(max-width: 700px\) \{(.*?)\n\}", css, re.S)
    assert phone, css
    rules = phone.group(1)
    assert ".wide { display: none; }" in rules and "details.phone { display: block; }" in rules
    assert re.search(r"figure img \{ max-width: none; \}", rules) and "overflow-x: auto" in rules
    folded = html.split('<details class="phone">', 1)[1].split("</details>", 1)[0]
    wide_toc = html.split('<nav class="toc wide"', 1)[1].split("</nav>", 1)[0]
    anchors = re.findall(r'href="#([^"]+)"', wide_toc)
    assert anchors and anchors == re.findall(r'href="#([^"]+)"', folded)  # every section, in the same order
    assert 'href="summary.json"' in folded and 'href="records.csv"' in folded
    assert html.index('<details class="phone">') < html.index('id="recommendations"')
