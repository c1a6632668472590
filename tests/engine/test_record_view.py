"""The record's one typed view, its upgrade from older layouts on read, and ``build_record`` as a pure function of
plain facts (issue 29, item 3)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from medft_bench.config import CellConfig
from medft_bench.errors import RecordError
from medft_bench.results.facts import CellFacts, Measurements
from medft_bench.results.record import SCHEMA_VERSION, build_record, validate
from medft_bench.results.store import load_records, read_record
from medft_bench.results.upgrade import STEPS, upgrade
from medft_bench.results.view import RecordView
from tests.helpers import make_record, write


def as_v1(record: dict) -> dict:
    """``record`` as schema v1 wrote it: no ``cell.protocol`` for a study cell; before ``data.modality`` existed,
    no modality either."""
    old = copy.deepcopy(record)
    old["schema_version"] = 1
    del old["cell"]["protocol"]
    del old["data"]["modality"]
    return old


def test_every_older_version_has_a_step_to_the_next() -> None:
    assert sorted(STEPS) == list(range(1, SCHEMA_VERSION))


def test_a_v1_file_is_read_in_the_current_layout_and_left_as_it_is(tmp_path: Path) -> None:
    current = make_record(dataset="pathmnist", strategy="lp")
    old = as_v1(current)
    with pytest.raises(RecordError, match="protocol"):
        validate(old)  # the schema describes the current layout only: v1 is read through the upgrade
    path = tmp_path / "quick" / "old.json"
    path.parent.mkdir()
    path.write_text(json.dumps(old, sort_keys=True))
    before = path.read_bytes()

    read = read_record(path)
    assert read["schema_version"] == SCHEMA_VERSION
    assert read["cell"]["protocol"] == "study"
    assert read["data"]["modality"] == "" and RecordView(read).modality == "histology"  # from MedMNIST's table
    assert path.read_bytes() == before  # upgraded in memory, never rewritten
    assert load_records([tmp_path]) == ([read], [])
    # An upgraded v1 record reads like the same record written in the current layout.
    view, same = RecordView(read), RecordView(current)
    for name in ("protocol", "modality", "strategy", "label", "status", "weights_kind", "synthetic", "test"):
        assert getattr(view, name) == getattr(same, name), name


def as_v2(record: dict) -> dict:
    """``record`` as schema v2 wrote it: no statement of whether the method completed."""
    old = copy.deepcopy(record)
    old["schema_version"] = 2
    del old["strategy"]["complete"], old["strategy"]["incomplete_reason"]
    return old


def test_every_record_states_whether_its_method_completed(tmp_path: Path) -> None:
    """v3 records say whether the method ran as specified; v2 records get it derived when read: GU from its
    schedule's log, Auto-RGN/Auto-SNR from their probe's batches, LP-FT from its stage-2 epochs, else complete."""
    ft = make_record(strategy="ft")
    assert RecordView(ft).method_complete and RecordView(ft).incomplete_reason is None
    with pytest.raises(RecordError, match="complete"):
        validate(as_v2(ft))
    cases = {"ft": ({}, {}, True), "gu_first_last": ({}, {"complete": False}, False),
             "gu_last_first": ({}, {"complete": True}, True), "auto_rgn": ({"n_batches": 2}, {}, False),
             "auto_snr": ({"n_batches": 5}, {}, True), "lp_ft": ({}, {}, False)}
    for name, (hparams, log, complete) in cases.items():
        rec = as_v2(make_record(strategy=name))
        rec["strategy"].update(hparams=hparams, log=log)
        path = write(tmp_path, rec)
        view = RecordView(read_record(path))
        assert view.method_complete is complete, name
        assert (view.incomplete_reason is None) is complete, name
        if name == "auto_rgn":
            assert view.incomplete_reason == "gradient probe on 2 batches, the reference's 5"
    lp_ft = as_v2(make_record(strategy="lp_ft"))
    lp_ft["epochs"] = [{"stage": "lp", "epochs": 0}, {"stage": "ft", "start": True}, {"stage": "ft", "epoch": 0}]
    assert RecordView(upgrade(lp_ft)).method_complete  # stage 2 ran


def test_the_upgrade_copies_and_leaves_what_it_does_not_know() -> None:
    old = as_v1(make_record(dataset="set0mnist"))
    snapshot = copy.deepcopy(old)
    new = upgrade(old)
    assert old == snapshot  # the argument is not changed
    assert RecordView(new).modality == "unknown"  # a dataset outside MedMNIST's table
    for odd in ([], "x", {"schema_version": 99}, {"schema_version": True}, {"schema_version": "1"}):
        assert upgrade(odd) is odd
    damaged = upgrade({"schema_version": 1, "cell": 3})
    assert damaged["cell"] == 3  # the wrong shape stays for the validator to name
    with pytest.raises(RecordError, match="cell"):
        validate(damaged)


def test_the_leaderboard_of_v1_files_is_the_leaderboard_of_the_same_records_in_the_current_layout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medft_bench.leaderboard.publish import publish

    for version in ("v1", "v2"):
        for dataset, modality_known in (("pathmnist", True), ("dermamnist", False)):
            for strategy, gain in (("ft", 0.0), ("lp", -0.05), ("lp_ft", 0.03)):
                for seed in range(3):
                    rec = make_record(dataset=dataset, strategy=strategy, seed=seed,
                                      primary=0.7 + gain + 0.01 * seed)
                    if not modality_known:
                        rec["data"]["modality"] = ""
                    write(tmp_path / version / "records", as_v1(rec) if version == "v1" else rec)
    pages = {}
    for version in ("v1", "v2"):
        monkeypatch.chdir(tmp_path / version)  # the same relative input paths: only the layout differs
        publish(["records"], out="board")
        board = tmp_path / version / "board"
        pages[version] = {p.relative_to(board): p.read_bytes() for p in sorted(board.rglob("*")) if p.is_file()}
    assert pages["v1"] == pages["v2"] and len(pages["v1"]) >= 8


def _facts(cfg: CellConfig, **over) -> CellFacts:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    measured = Measurements(train_s=2.0, eval_s=0.5, train_images=192,
                            epochs=[{"stage": "train", "epoch": 0, "lr": 1e-3, "train_loss": 0.6,
                                     "norm_mode": "train"}],
                            max_trainable=10, trainable_per_stage={"train": 10}, drift={"train": 0.1},
                            best={"train": {"epoch": 0}})
    metrics = {s: {"acc": 0.75, "auc": 0.8, "balanced_acc": 0.7, "f1_macro": 0.7, "map": 0.8} for s in ("val", "test")}
    facts = dict(
        cfg=cfg, settings={"epochs": 1, "batch_size": 16, "lr": 1e-3, "optimizer": "adam", "scheduler": "cosine",
                           "patience": 0},
        strategy={"name": "ft", "label": "FT", "hparams": {}, "in_study": True, "log": {}, "complete": True,
                  "incomplete_reason": None},
        weights={"source": "random"}, head={"init": "scaled"},
        data={"source": "synthetic", "synthetic": True, "task": "binary-class", "n_classes": 2, "md5": "0" * 32,
              "file": "x.npz", "modality": "x-ray", "splits": {"train": 96, "val": 96, "test": 96}},
        preprocess={"target_size": 32, "policy": "resize", "mean": [0.5], "std": [0.5]}, amp=None,
        channels_last=False, device="cpu", task="binary-class", metrics=metrics, monitor="balanced_acc",
        majority={"acc": 0.5, "balanced_acc": 0.5}, measured=measured, reused_train_s=0.0,
        peak_gpu_allocated_mb=None, peak_gpu_reserved_mb=None, peak_host_rss_mb=900.0, peak_host_scope="cell",
        total_params=20, data_conversion_s=0.0, status="ok", error=None, diverged_epoch=None, started=start,
        finished=start + timedelta(seconds=4), tuning=None)
    return CellFacts(**{**facts, **over})


def test_build_record_is_a_pure_function_of_its_facts() -> None:
    """No model, device or strategy object: the same facts give the same record, and every number in it is one of
    the facts or derived from them."""
    cfg = CellConfig(tier="smoke", dataset="pneumoniamnist", img_size=32, backbone="resnet50", strategy="ft", seed=0,
                     synthetic=True, weights="random")
    env, code = {"python": "3", "packages": {}, "device": "cpu", "cpu": "x"}, {"version": "0", "commit": None,
                                                                              "dirty": None}
    facts = _facts(cfg)
    a, b = build_record(facts, env, code), build_record(facts, env, code)
    assert a == b
    view = RecordView(a)
    assert view.protocol == "study" and view.ok and view.test["auc"] == 0.8 and view.drift == 0.1
    assert view.costs["train_s"] == facts.measured.training_s == 2.0
    assert view.costs["train_images_per_s"] == 192 / 2.0 and view.costs["wall_s"] == 4.0
    assert view.costs["peak_host_rss_mb"] == 900.0 and view.costs["peak_gpu_allocated_mb"] is None
    assert a["strategy"]["norm_modes"] == ["train"] and a["config"]["train"] == facts.settings
    # A reused head's time is part of the cell's training cost; a weak result is judged from the metrics given.
    reused = RecordView(build_record(_facts(cfg, reused_train_s=3.0), env, code))
    assert reused.costs["train_s"] == 5.0 and reused.costs["reused_train_s"] == 3.0
    weak = _facts(cfg, metrics={s: {**facts.metrics[s], "acc": 0.5} for s in ("val", "test")})
    assert RecordView(build_record(weak, env, code)).weak_result == "acc 0.500 <= majority 0.500"
