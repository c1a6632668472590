"""Per-image predictions kept beside a record: the kept model's class probabilities on validation and test.

They are what ROC curves, DeLong tests, error analysis and the leaderboard's bootstrap over test images need.
The files are MedMNIST's own result format (``medmnist.Evaluator``: one line per image, ``index,p0,p1,...``,
no header; named ``{flag}{_size}_{split}_[AUC]x_[ACC]y@{run}.csv``), so ``python -m medmnist evaluate --path
FILE`` scores a MedMNIST cell's file as it scores anyone's. The labels are written beside them in the same
layout (``{split}_labels.csv``), so a reader needs no dataset to recompute a metric. The record lists every
file with its SHA-256: a file edited or swapped afterwards is refused, never read as the cell's.

They live in ``<record stem>.predictions/`` and are written with the record, in one atomic step
(``results.store``): a record that lists them implies they are there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from medft_bench.errors import RecordError
from medft_bench.io import read_regular

FOLDER_SUFFIX = ".predictions"
SPLITS = ("val", "test")
FORMAT = "medmnist-evaluator-csv"


def folder_for(record_path: Path) -> Path:
    return record_path.with_suffix(FOLDER_SUFFIX)


def _lines(values: np.ndarray, fmt: str) -> str:
    rows = values.reshape(len(values), -1)
    return "".join(f"{i}," + ",".join(fmt % v for v in row) + "\n" for i, row in enumerate(rows))


def score_text(scores: np.ndarray) -> str:
    # %.9g: a float32 probability reads back as the same float32, so metrics recompute exactly
    return _lines(np.asarray(scores, dtype=np.float32), "%.9g")


def label_text(labels: np.ndarray) -> str:
    return _lines(np.asarray(labels).astype(np.int64), "%d")


def file_names(dataset: str, img_size: int, split: str, metrics: dict[str, Any], run: str) -> tuple[str, str]:
    """MedMNIST's standard result name for the scores (the size flag blank at 28 px), and the labels' name."""
    size_flag = "" if img_size == 28 else f"_{img_size}"

    def three(v: Any) -> str:
        return "nan" if v is None else f"{v:.3f}"

    scores = f"{dataset}{size_flag}_{split}_[AUC]{three(metrics.get('auc'))}_[ACC]{three(metrics.get('acc'))}@{run}.csv"
    return scores, f"{split}_labels.csv"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def build(dataset: str, img_size: int, run: str, metrics: dict[str, dict[str, Any]],
          scores: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, str]]:
    """The record's ``predictions`` entry and the files' texts by name, for the splits in ``scores``."""
    files: dict[str, str] = {}
    entry: dict[str, Any] = {"format": FORMAT, "splits": {}}
    for split in SPLITS:
        if split not in scores:
            continue
        s_name, l_name = file_names(dataset, img_size, split, metrics[split], run)
        files[s_name], files[l_name] = score_text(scores[split]), label_text(labels[split])
        entry["splits"][split] = {"images": int(len(scores[split])), "scores": s_name, "labels": l_name,
                                  "sha256": {s_name: sha256(files[s_name]), l_name: sha256(files[l_name])}}
    return entry, files


def _read(path: Path, expected: str) -> np.ndarray:
    try:
        text = read_regular(path).decode("utf-8")  # a FIFO is refused, never waited on
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"{path}: cannot read the predictions ({exc})") from None
    if sha256(text) != expected:
        raise RecordError(f"{path}: not the file its record lists (SHA-256 differs): it was edited or replaced; "
                          "run the cell again with --rerun to write it anew")
    rows = [line.split(",") for line in text.splitlines()]
    return np.array([[float(v) for v in row[1:]] for row in rows])


def load(record_path: Path, record: dict[str, Any], split: str = "test") -> tuple[np.ndarray, np.ndarray] | None:
    """``(labels, scores)`` of ``split`` for the record at ``record_path``, or None when it kept none (an older
    record, or one that is not ok). :class:`RecordError` when a listed file is missing or not the one listed."""
    entry = (record.get("predictions") or {}).get("splits", {}).get(split)
    if entry is None:
        return None
    folder = folder_for(Path(record_path))
    scores = _read(folder / entry["scores"], entry["sha256"][entry["scores"]])
    labels = _read(folder / entry["labels"], entry["sha256"][entry["labels"]])
    if len(scores) != entry["images"] or len(labels) != entry["images"]:
        raise RecordError(f"{folder}: {split} predictions for {len(scores)} images, labels for {len(labels)}, "
                          f"the record says {entry['images']}")
    labels = labels.astype(np.int64)
    return (labels[:, 0] if labels.shape[1] == 1 else labels), scores
