"""The tuned protocol: the configuration and its ids, the choice made on validation only (the test split
evaluated once, for the chosen trial), resumable trials, strategies without a learning rate, the CLI, and the
leaderboard's two protocols with the survival table."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medft_bench.config import CellConfig, parse_lr_grid
from medft_bench.errors import MedftError
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.identity import identity_at
from medft_bench.results.record import validate
from medft_bench.results.store import ResultStore, load_records
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell, run_or_reuse, run_trial_or_reuse
from medft_bench.tiers import get_tier
from medft_bench.training import engine, tuning
from tests.helpers import tiny_cell

GRID = (1e-4, 1e-3)


def tuned(strategy: str = "ft", grid: tuple[float, ...] = GRID, **train: Any) -> CellConfig:
    return replace(tiny_cell("resnet18", strategy, **train), protocol="tuned", lr_grid=grid)


# -- configuration -------------------------------------------------------------------------------------------


def test_study_ids_and_hashes_stay_and_tuned_cells_are_apart() -> None:
    study = tiny_cell("resnet18", "ft")
    old = identity_at(study, 1)  # records written before protocols existed are found
    assert "protocol" not in old and "lr_grid" not in old and study.identity()["protocol"] == "study"
    assert study.cell_id == "unit-pneumoniamnist-32-resnet18-ft-seed0"
    t = tuned()
    assert t.cell_id == "unit-pneumoniamnist-32-resnet18-ft-tuned-seed0"
    assert t.config_hash != study.config_hash != replace(t, lr_grid=(1e-3,)).config_hash
    assert tuning.trial_hash(t, 1e-3) != tuning.trial_hash(t, 1e-4)
    assert parse_lr_grid("1e-3, 1e-4,1e-3") == (1e-4, 1e-3)
    with pytest.raises(MedftError, match="unknown protocol 'best'; use one of study, tuned"):
        build_grid(get_tier("smoke"), GridOptions(protocol="best"))


def test_grids_per_strategy() -> None:
    assert tuning.tuning_grid(replace(tuned(), lr_grid=())) == (1e-5, 1e-4, 1e-3, 1e-2)
    assert tuning.tuning_grid(replace(tuned("lp_ft"), lr_grid=())) == (1e-4, 1e-3, 1e-2, 1e-1)
    assert tuning.tuning_grid(tuned("lp")) == () and tuning.tuning_grid(tuned("knn")) == ()
    assert tuning.tuning_grid(tuned("lp", params={"solver": "adam"})) == GRID  # the study's Adam probe has an lr
    smoke = build_grid(get_tier("smoke"), GridOptions(protocol="tuned", backbones=["resnet50"],
                                                      strategies=["ft", "lp_ft"]))
    assert [c.lr_grid for c in smoke] == [(1e-4, 1e-3), (1e-3, 1e-2)]


# -- the choice is made on validation; the test split is touched once --------------------------------------


def _fake_metrics(value: float) -> dict[str, float]:
    return {"acc": value, "auc": value, "balanced_acc": value, "f1_macro": value, "map": value}


def test_choice_on_validation_and_test_evaluated_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """lr 1e-4 would have the best test score, 1e-3 has the best validation score: 1e-3 is chosen, and the test
    split is evaluated exactly once, on the chosen trial's model."""
    calls: list[tuple[str, float]] = []
    val = {1e-4: 0.55, 1e-3: 0.80}
    test = {1e-4: 0.99, 1e-3: 0.60}

    def evaluate(self: Any, split: str) -> dict[str, float]:
        lr = self.ctx.settings.lr
        calls.append((split, lr))
        return _fake_metrics((val if split == "val" else test)[lr])

    monkeypatch.setattr(engine.Trainer, "evaluate", evaluate)
    rec = compute_cell(tuned(), RunEnv(progress=False)).record
    validate(rec)
    assert rec["status"] == "ok" and rec["tuning"]["chosen_lr"] == 1e-3 and rec["tuning"]["model"] == "kept"
    assert [c for c in calls if c[0] == "test"] == [("test", 1e-3)]
    assert rec["metrics"]["test"]["balanced_acc"] == 0.60 and rec["metrics"]["val"]["balanced_acc"] == 0.80
    assert rec["config"]["train"]["lr"] == 1e-3


def test_tuned_record_keeps_every_trial_and_the_whole_cost() -> None:
    rec = compute_cell(tuned(epochs=2), RunEnv(progress=False)).record
    validate(rec)
    t = rec["tuning"]
    assert rec["cell"]["protocol"] == "tuned" and t["grid"] == list(GRID)
    assert [x["lr"] for x in t["trials"]] == list(GRID) and all(x["status"] == "ok" for x in t["trials"])
    for x in t["trials"]:
        assert x["epochs_run"] == 2 and x["val"] is not None and x["train_s"] > 0 and x["key"][0] is not None
    chosen = max(t["trials"], key=lambda x: tuple(x["key"]))
    assert t["chosen_lr"] == chosen["lr"] and rec["metrics"]["val"] == chosen["val"]
    # The cost of a tuned cell is the whole sweep: every trial's training time, not only the chosen one's, and
    # the preparation done once before them (a random backbone's BatchNorm statistics, the head's scale).
    prepared = rec["weights"]["calibration"]["seconds"] + rec["head"]["seconds"]
    assert rec["costs"]["train_s"] == pytest.approx(sum(x["train_s"] for x in t["trials"]) + prepared, abs=1e-3)
    assert rec["costs"]["train_s"] == pytest.approx(t["total_train_s"])
    assert rec["costs"]["train_s"] > max(x["train_s"] for x in t["trials"])


def test_trials_share_the_backbone_and_the_frozen_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """One backbone build for the whole sweep, and LP-FT's second trial takes the first one's frozen features."""
    from medft_bench.models import factory

    builds = []
    real = factory.create_backbone

    def spy(*a: Any, **kw: Any) -> Any:
        builds.append(a[0])
        return real(*a, **kw)

    monkeypatch.setattr(factory, "create_backbone", spy)
    factory._LAST_BUILT.clear()
    rec = compute_cell(tuned("lp_ft", grid=(1e-3, 1e-2)), RunEnv(progress=False)).record
    assert builds == ["resnet18"] and rec["status"] == "ok"
    first, second = (x["feature_cache"] for x in rec["tuning"]["trials"])
    assert first["extracted"] and set(second["shared"]) == set(first["extracted"]) and not second["extracted"]


def test_only_a_grids_trials_hold_shared_features(monkeypatch: pytest.MonkeyPatch) -> None:
    """A study cell (one trial) keeps no frozen features beyond its trainer's own cache, which frees them before a
    stage that trains the backbone: LP-FT's stage 2 must not hold its stage 1's features (GPU memory)."""
    seen: list[Any] = []
    real = tuning.Trainer

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(kw.get("shared_features"))
        return real(*a, **kw)

    monkeypatch.setattr(tuning, "Trainer", spy)
    assert compute_cell(tiny_cell("resnet18", "lp_ft"), RunEnv(progress=False)).status == "ok"
    assert seen == [None]
    seen.clear()
    compute_cell(tuned("lp_ft", grid=(1e-3, 1e-2)), RunEnv(progress=False))
    assert len(seen) == 2 and seen[0] is seen[1] and isinstance(seen[0], dict)


# -- resume ----------------------------------------------------------------------------------------------------


def test_interrupted_tuning_resumes_after_its_finished_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    ran: list[float] = []
    real = tuning._Sweep.trial

    def interrupted(self: Any, lr: float) -> Any:
        if lr == GRID[1]:
            raise KeyboardInterrupt
        ran.append(lr)
        return real(self, lr)

    cfg = tuned()
    monkeypatch.setattr(tuning._Sweep, "trial", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_or_reuse(cfg, RunEnv.at(tmp_path, progress=False))
    store = ResultStore(tmp_path)
    data_cfg = replace(cfg, data_id=run_data_id(cfg))
    assert not store.path_for(data_cfg).exists()  # no record for an unfinished sweep ...
    assert store.read_trial(data_cfg, tuning.trial_hash(data_cfg, GRID[0]))["status"] == "ok"  # ... its trial kept
    assert load_records([tmp_path]) == ([], [])  # trial files are not records

    def counted(self: Any, lr: float) -> Any:
        ran.append(lr)
        return real(self, lr)

    ran.clear()
    monkeypatch.setattr(tuning._Sweep, "trial", counted)
    rec = run_or_reuse(cfg, RunEnv.at(tmp_path, progress=False)).record
    validate(rec)
    trials = rec["tuning"]["trials"]
    assert [x["resumed"] for x in trials] == [True, False]
    assert ran[0] == GRID[1]  # the finished trial was not run again ...
    if rec["tuning"]["chosen_lr"] == GRID[0]:  # ... unless chosen: its model is trained again, once
        assert ran == [GRID[1], GRID[0]] and rec["tuning"]["model"] == "retrained"
        assert rec["metrics"]["val"] == trials[0]["val"]  # same start, same seed: the same model on a CPU
    else:
        assert ran == [GRID[1]] and rec["tuning"]["model"] == "kept"
    ran.clear()
    assert run_or_reuse(cfg, RunEnv.at(tmp_path, progress=False)).reused and ran == []


def test_trials_as_tasks_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each trial run by itself (as a pytest-xdist worker or a cluster task would), then the cell: the cell runs
    no trial again (only the chosen one's model, which lives in the other process, is retrained)."""
    ran: list[float] = []
    real = tuning._Sweep.trial

    def counted(self: Any, lr: float) -> Any:
        ran.append(lr)
        return real(self, lr)

    monkeypatch.setattr(tuning._Sweep, "trial", counted)
    cfg = tuned()
    first = [run_trial_or_reuse(cfg, lr, RunEnv.at(tmp_path, progress=False)) for lr in GRID]
    assert ran == list(GRID) and [t["resumed"] for t in first] == [False, False]
    assert all(t["status"] == "ok" and t["val"] is not None for t in first)
    assert "test" not in json.dumps(first[0]["val"])  # validation only
    assert run_trial_or_reuse(cfg, GRID[0], RunEnv.at(tmp_path, progress=False))["resumed"]
    ran.clear()
    rec = run_or_reuse(cfg, RunEnv.at(tmp_path, progress=False)).record
    validate(rec)
    assert [t["resumed"] for t in rec["tuning"]["trials"]] == [True, True]
    assert ran == [rec["tuning"]["chosen_lr"]] and rec["tuning"]["model"] == "retrained"
    chosen = next(t for t in first if t["lr"] == rec["tuning"]["chosen_lr"])
    assert rec["metrics"]["val"] == chosen["val"]  # the retrained model is the trial's model


def test_a_trial_outside_the_grid_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MedftError, match="0.5 is not a learning rate of this cell's tuning grid"):
        run_trial_or_reuse(tuned(), 0.5, RunEnv.at(tmp_path, progress=False))
    with pytest.raises(MedftError, match="nothing to tune"):
        run_trial_or_reuse(tuned("knn"), 1e-3, RunEnv.at(tmp_path, progress=False))


def test_a_trial_being_run_elsewhere_is_waited_for(tmp_path: Path) -> None:
    import threading

    cfg = replace(tuned(), data_id=run_data_id(tuned()))
    store = ResultStore(tmp_path)
    finished = threading.Event()
    with store.claim(cfg, tuning.trial_hash(cfg, GRID[0])):  # another worker holds this trial
        worker = threading.Thread(target=lambda: (run_trial_or_reuse(cfg, GRID[0], RunEnv.at(tmp_path, progress=False)),
                                                  finished.set()))
        worker.start()
        assert not finished.wait(1.0)
        with store.claim(cfg, tuning.trial_hash(cfg, GRID[1])):  # the other trial's lock is another lock
            pass
    worker.join(600)
    assert finished.is_set() and store.read_trial(cfg, tuning.trial_hash(cfg, GRID[0]))["status"] == "ok"


def run_data_id(cfg: CellConfig) -> str:
    from medft_bench.data.sources import data_identity

    return data_identity(cfg.dataset, cfg.img_size, synthetic_data=cfg.synthetic)


# -- one protocol path: a study cell is a sweep of one trial --------------------------------------------------


def test_a_study_cell_is_a_tuned_cell_of_one_trial() -> None:
    """A study cell and a tuned cell whose grid is the study's learning rate alone train the same model from the
    same start (the same random sequence) and get the same metrics, scores and epochs; so does that rate's trial
    within a sweep of two (each trial from a copy of the backbone); another rate trains another model."""
    cfg = tiny_cell("resnet18", "ft", epochs=2)
    lr, env = cfg.train.lr, RunEnv(progress=False)
    study = tuning.sweep(cfg, env)
    one = tuning.sweep(replace(cfg, protocol="tuned", lr_grid=(lr,)), env)
    assert study.tuning is None and study.status == one.status == "ok"
    assert one.tuning["grid"] == [lr] and one.tuning["chosen_lr"] == lr and one.tuning["model"] == "kept"
    assert one.metrics == study.metrics and one.measured.epochs == study.measured.epochs
    assert set(one.scores) == set(study.scores) == {"val", "test"}
    assert all(np.array_equal(one.scores[k], study.scores[k]) for k in study.scores)
    a, b = study.ctx.model.state_dict(), one.ctx.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    two = tuning.sweep(replace(cfg, protocol="tuned", lr_grid=(lr, lr * 10)), env).tuning["trials"]
    assert two[0]["lr"] == lr and two[0]["val"] == study.metrics["val"]
    assert two[1]["val"] != study.metrics["val"]


# -- strategies without a learning rate -------------------------------------------------------------------


def test_knn_runs_as_under_study_and_says_so() -> None:
    study = compute_cell(tiny_cell("resnet18", "knn"), RunEnv(progress=False)).record
    rec = compute_cell(tuned("knn"), RunEnv(progress=False)).record
    validate(rec)
    assert rec["tuning"]["grid"] == [] and "runs exactly as under the study's protocol" in rec["tuning"]["note"]
    assert rec["metrics"]["test"] == study["metrics"]["test"]


# -- CLI ------------------------------------------------------------------------------------------------------


def test_cli_protocol(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medft_bench.__main__ import main

    cell = ["run", "--dataset", "pneumoniamnist", "--backbone", "resnet18", "--strategy", "ft", "--epochs", "1",
            "--results-dir", str(tmp_path)]
    assert main([*cell, "--protocol", "fancy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unknown protocol 'fancy'; use one of study, tuned"]
    assert main([*cell, "--protocol", "tuned", "--lr-grid", "1e-3,1e-2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("smoke-pneumoniamnist-32-resnet18-ft-tuned-seed0: ok")
    assert "chosen on validation of 0.001, 0.01 (2 trials; model kept)" in out


# -- leaderboard ------------------------------------------------------------------------------------------


def test_leaderboard_keeps_protocols_apart_and_shows_survival(tmp_path: Path) -> None:
    from medft_bench.leaderboard.aggregate import aggregate
    from medft_bench.leaderboard.load import load_inputs
    from medft_bench.leaderboard.publish import publish
    from medft_bench.leaderboard.render_rich import render_plain
    from medft_bench.leaderboard.survival import survival
    from tests.helpers import make_record, tuned_record, write

    study = {"ft": 0.70, "lp_ft": 0.75, "auto_rgn": 0.72}  # LP-FT +5 pp, Auto-RGN +2 pp at the study's lr
    tuned_means = {"ft": 0.80, "lp_ft": 0.77, "auto_rgn": 0.83}  # tuned: LP-FT -3 pp (a flip), Auto-RGN +3 pp
    root = tmp_path / "results"
    for backbone in ("resnet50", "densenet121"):
        for s, m in study.items():
            write(root, make_record(backbone=backbone, strategy=s, primary=m))
            write(root, tuned_record(backbone=backbone, strategy=s, primary=tuned_means[s], train_s=40.0))
    inputs = load_inputs([root])
    assert len(inputs.runs) == 12 and not inputs.notes  # a tuned cell never supersedes its study twin
    groups = aggregate(inputs.runs)[::-1]  # published tuned first (the answer's protocol); here study, tuned
    assert [g.key.protocol for g in groups] == ["study", "tuned"]
    assert "TUNED protocol" in groups[1].key.label and groups[1].key.slug.endswith("-tuned")
    assert groups[0].rows[0].mean != groups[1].rows[0].mean  # never averaged together
    sv = {x.strategy: x for x in survival(*groups)}
    assert sv["lp_ft"].study == pytest.approx(0.05) and sv["lp_ft"].tuned == pytest.approx(-0.03)
    assert sv["lp_ft"].flip and not sv["auto_rgn"].flip and len(sv["lp_ft"].cases) == 2
    # The study's claims, per protocol: LP-FT beats FT in 2/2 cases under study, 0/2 under tuned.
    assert [g.claims[0].details["wins"] for g in groups] == [2, 0]

    text = render_plain(groups, inputs, {})
    assert "Does it survive tuning?" in text and "sign flip" in text and "TUNED protocol" in text
    out = tmp_path / "board"
    publish([root], out=out)
    page = (out / "quick.md").read_text()
    assert "## Does it survive tuning? — quick tier" in page and "| LP-FT | +5.00 | -3.00 | -8.00 | 2 | sign flip |" \
        in page
    assert "lr 0.0001" in page  # the chosen learning rate in the details
    summary = json.loads((out / "summary.json").read_text())
    assert [g["protocol"] for g in summary["groups"]] == ["tuned", "study"]
    flips = {x["strategy"]: x["sign_flip"] for x in summary["survival"][0]["strategies"]}
    assert flips == {"lp_ft": True, "auto_rgn": False}
    tuned_group = summary["groups"][0]
    assert {r["strategy"]: r["costs"]["train_s"] for r in tuned_group["rows"]}["ft"] == 40.0


def test_the_real_tier_tunes_every_strategy_on_the_same_multiples_of_its_own_default() -> None:
    """Equal tuning: no rate hand-picked for one strategy; every trainable strategy sweeps the same multiples of
    its own default rate (LP-FT's stage 2 of its lr x 0.1), selected on validation AUC; LP and kNN have no rate."""
    from medft_bench.strategies.registry import create_strategy

    tier = get_tier("real")
    assert tier.train.monitor == "auc" and tier.train.subset_seed == "cell"
    assert "lp_ft" not in tier.strategy_params and "auto_rgn" not in tier.strategy_params
    multiples = None
    for strategy in (*tier.strategies, "auto_snr", "ft_eval"):
        cfg = tier.cell("breastmnist", 28, tier.backbones[0], strategy, 0, protocol="tuned")
        grid = tuning.tuning_grid(cfg)
        if strategy in ("lp", "knn"):
            assert grid == (), strategy  # a solved head and a vote: they run as under the study
            continue
        own = create_strategy(strategy, **cfg.params()).params
        default = cfg.train.lr * (own["ft_lr_scale"] if strategy == "lp_ft" else 1.0)  # its method's own rate
        trained = [lr * (own["ft_lr_scale"] if strategy == "lp_ft" else 1.0) for lr in grid]
        got = tuple(round(lr / default, 6) for lr in trained)
        multiples = multiples or got
        assert got == multiples, strategy
    assert multiples == (0.1, 1.0, 10.0)
    # The multiples follow the settings' rate (an --lr override moves the whole grid).
    assert tier.cell("breastmnist", 28, tier.backbones[0], "ft", 0, {"lr": 1e-4}, protocol="tuned").lr_grid == (
        1e-5, 1e-4, 1e-3)
