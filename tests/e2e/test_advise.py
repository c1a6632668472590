"""advise's race: its selection rule on simulated strategies (a planted best is kept; under a null no strategy is
singled out more often than nominal), its budget, and that nothing of the test split steers it (end to end on
small synthetic MedMNIST-format files).

The simulated world has the real tier's shape (9 strategies that train with a rate, LP and kNN without one,
5 seeds, the tuned sweep of 3 trials, 3 epochs): a strategy's quality, a seed's training effect shared by its
validation score and its image resamples (as in tests/e2e/test_separation.py), and a 1-epoch screen that sees the
quality through more noise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medft_bench.advise import SCREEN, Observation, Plan, race

TRAINED = tuple(f"t{k}" for k in range(9))
FIXED = ("lp", "knn")
SEEDS = (0, 1, 2, 3, 4)
B = 300
TRAIN_SD, SCREEN_SD, DRAW_SD = 0.02, 0.03, 0.012
COST = {"screen": 20.0, "trained": 60.0, "fixed": 2.0}  # seconds: a 1-epoch screen, a 3-trial sweep, a probe


def plan(budget: float = 0.35) -> Plan:
    strategies = (*TRAINED, *FIXED)
    return Plan(strategies, frozenset(FIXED), SEEDS, budget, {s: 1 if s in FIXED else 3 for s in strategies},
                1 / 3)


class World:
    """An evaluate function over simulated strategies of quality ``quality`` (default 0.85)."""

    def __init__(self, rng: np.random.Generator, quality: dict[str, float] | None = None) -> None:
        self.rng = rng
        self.quality = quality or {}
        self.shared = rng.normal(0, DRAW_SD, B)  # the same validation images for every network
        self.calls: list[tuple[str, int, str]] = []

    def __call__(self, strategy: str, seed: int, rung: str) -> Observation:
        self.calls.append((strategy, seed, rung))
        q = self.quality.get(strategy, 0.85)
        if rung == SCREEN:
            return Observation(q - 0.03 + self.rng.normal(0, SCREEN_SD), None, COST["screen"] / 3)
        val = q + self.rng.normal(0, TRAIN_SD)
        draws = val + self.shared + self.rng.normal(0, DRAW_SD / 2, B)
        return Observation(float(val), draws, COST["fixed" if strategy in FIXED else "trained"])


@pytest.mark.slow  # about 10 s: the studentized range's integrals
def test_a_planted_best_strategy_is_kept_and_picked() -> None:
    rng = np.random.default_rng(3)
    reps, kept, first = 40, 0, 0
    for _ in range(reps):
        d = race(plan(), World(rng, {"t4": 0.90}))  # +5 pp, the size tests/e2e/test_separation.py finds
        kept += "t4" in d.recommended
        first += d.recommended[0] == "t4"
    # the one-epoch screen sees +5 pp through 3 pp of noise and keeps 5 of 9: about 1 in 20 it drops the best
    # (120 simulated races: kept 90 %, first 77 %)
    assert kept / reps >= 0.85, kept
    assert first / reps >= 0.7, first


@pytest.mark.slow
def test_under_a_null_no_strategy_is_singled_out_more_often_than_nominal() -> None:
    rng = np.random.default_rng(4)
    reps, separated = 150, 0
    firsts: dict[str, int] = {}
    for _ in range(reps):
        d = race(plan(), World(rng))
        separated += d.separated
        firsts[d.recommended[0]] = firsts.get(d.recommended[0], 0) + 1
        if not d.separated:  # it cannot tell: the cheapest of the set, never a winner
            assert d.recommended[0] in FIXED and set(d.recommended) == set(d.finalists)
    assert separated / reps <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / reps), separated
    trained_firsts = sum(n for s, n in firsts.items() if s in TRAINED)
    assert trained_firsts <= separated  # a trained strategy is first only when the data separated something


@pytest.mark.parametrize("budget", [0.2, 0.35, 0.5])
def test_the_race_spends_at_most_its_budget(budget: float) -> None:
    d = race(plan(budget), World(np.random.default_rng(5)))
    grid = (len(TRAINED) * COST["trained"] + len(FIXED) * COST["fixed"]) * len(SEEDS)
    assert d.grid_estimate_s == pytest.approx(grid)
    assert d.spent_s <= budget * grid + 1e-9
    assert len(d.runs(SCREEN)) == len(TRAINED)  # every trained strategy screened, once
    assert all(st.seed == 0 for st in d.runs(SCREEN))


def test_a_budget_out_of_range_is_refused() -> None:
    from medft_bench.errors import MedftError

    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(MedftError, match="--budget"):
            plan(bad)


def test_one_seed_cannot_separate_and_says_so() -> None:
    p = plan()
    one = Plan(p.strategies, p.fixed, (0,), 1.0, p.trials, p.screen_share)
    d = race(one, World(np.random.default_rng(6), {"t1": 0.95}))
    assert not d.separated and d.recommended[0] in FIXED
    assert any("one seed" in n for n in d.notes)


# -- end to end: the command, and the test split read only after the answer --------------------------------------


def _npz(root: Path) -> Path:
    from medft_bench.data.synthetic import write_synthetic_medmnist

    return write_synthetic_medmnist("pneumoniamnist", 28, root, {"train": 48, "val": 40, "test": 40}, 0)


ADVISE = ["advise", "--tier", "quick", "--datasets", "pneumoniamnist", "--backbones", "resnet18", "--weights",
          "random", "--strategies", "ft,lp,knn", "--seeds", "0,1", "--epochs", "2", "--lr-grid",
          "1e-3,1e-2", "--max-train-samples", "48", "--progress", "off", "--budget", "1"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*not the official MedMNIST")
def test_advise_end_to_end_reads_no_test_score_before_its_answer(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The command races, prints its answer and writes --json; then every record's test metrics are changed on
    disk and the test predictions removed: a second run (every cell reused) gives the same answer, while the test
    scores it reports afterwards are the new ones."""
    from medft_bench.__main__ import main
    from medft_bench.results.store import load_records

    _npz(tmp_path / "data")
    out_json = tmp_path / "answer.json"
    argv = [*ADVISE, "--data-root", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--json", str(out_json)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    first = json.loads(out_json.read_text())
    assert set(first) >= {"recommended", "spent_s", "grid_estimate_s"}
    assert first["recommended"] and set(first["recommended"]) <= {"ft", "lp", "knn"}
    assert first["spent_s"] > 0 and first["grid_estimate_s"] > 0  # at --budget 1 the screens may add to the grid
    assert "recommended: " + ", ".join(first["recommended"]) in out
    assert "quick_screen-pneumoniamnist-resnet18-" in err  # the screens: a tier of their own
    records, problems = load_records([tmp_path / "results"])
    assert problems == [] and {r["cell"]["tier"] for r in records} == {"quick", "quick_screen"}

    for path in (tmp_path / "results").rglob("*.json"):  # every test score changed, test predictions gone
        if path.parent.name.endswith(".trials") or path.name.startswith("."):
            continue
        record = json.loads(path.read_text())
        if (record.get("metrics") or {}).get("test"):
            record["metrics"]["test"]["auc"] = 1.0 - record["metrics"]["test"]["auc"]
            path.write_text(json.dumps(record))
    for path in (tmp_path / "results").rglob("*test*"):
        if path.is_file() and path.parent.name.endswith(".predictions"):
            path.unlink()
    assert main(argv) == 0
    out2, err2 = capsys.readouterr()
    second = json.loads(out_json.read_text())
    assert second["recommended"] == first["recommended"]
    assert [r["val"] for r in second["runs"]] == [r["val"] for r in first["runs"]]
    assert all(r["reused"] for r in second["runs"])
    changed = [s for s, f in first["finalists"].items() if second["finalists"][s]["test"] != f["test"]]
    assert changed  # the report read the test scores, after the answer


def test_advise_refuses_what_does_not_apply(capsys: pytest.CaptureFixture[str]) -> None:
    from medft_bench.__main__ import main

    assert main(["advise", "--protocol", "both", "--datasets", "pneumoniamnist"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["advise", "--budget", "2", "--datasets", "pneumoniamnist", "--synthetic"]) == 2
    assert "--budget 2 is out of range" in capsys.readouterr().err
