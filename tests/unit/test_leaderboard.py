"""The leaderboard on a hand-made grid of schema-valid records (no training): aggregates against hand-computed
values, ranks with ties, the study's claims, separation of tiers / synthetic data / weights, problems,
determinism of every output file, the CLI's exit codes and plain output."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as sps

from medft_bench.leaderboard.__main__ import main
from medft_bench.leaderboard.aggregate import aggregate
from medft_bench.leaderboard.group_key import GroupKey
from medft_bench.leaderboard.load import load_inputs
from medft_bench.leaderboard.stats import average_ranks, holm, majority_flag, pareto_front, summarize
from medft_bench.results.record import validate
from tests.helpers import MULTI_LABEL, STUDY, make_record, tuned_record, write

ROOT = Path(__file__).resolve().parents[2]
# The main group (quick tier, 28 px, real data, pretrained): case means of the test metric, per strategy.
MEANS = {
    ("pathmnist", "resnet50"): {"ft": .80, "lp": .70, "lp_ft": .82, "auto_rgn": .85},
    ("pathmnist", "densenet121"): {"ft": .78, "lp": .72, "lp_ft": .81, "auto_rgn": .80},
    ("dermamnist", "resnet50"): {"ft": .60, "lp": .55, "lp_ft": .58, "auto_rgn": .62},
    ("dermamnist", "densenet121"): {"ft": .58, "lp": .55, "lp_ft": .61, "auto_rgn": .55},  # lp = auto_rgn: a tie
    ("chestmnist", "resnet50"): {"ft": .70, "lp": .65, "lp_ft": .69, "auto_rgn": .72},
    ("chestmnist", "densenet121"): {"ft": .68, "lp": .66, "lp_ft": .70, "auto_rgn": .79},
}
OFFSETS = (-0.01, 0.0, 0.01)  # three seeds: mean = the case mean, sample std = 0.01


def build_grid(root: Path) -> dict[str, Path]:
    """Write the test grid under ``root``; return a few notable paths."""
    shard1, shard2 = root / "shard1", root / "shard2"
    paths = {}
    for (dataset, backbone), by_strategy in MEANS.items():
        for strategy, mean in by_strategy.items():
            for seed, off in enumerate(OFFSETS):
                acc = 0.60 if (dataset, backbone, strategy) == ("dermamnist", "resnet50", "lp") and seed == 0 else None
                rec = make_record(dataset=dataset, backbone=backbone, strategy=strategy, seed=seed,
                                  primary=mean + off, acc=acc, train_s={"lp": 2.0, "ft": 10.0}.get(strategy, 12.0),
                                  trainable={"lp": 9_000}.get(strategy, 23_500_000))
                paths[f"{dataset}-{backbone}-{strategy}-{seed}"] = write(shard1 if seed < 2 else shard2, rec)
    # A diverged and a failed seed: counted and listed, never in the means.
    paths["diverged"] = write(shard2, make_record(dataset="dermamnist", strategy="lp", seed=3, status="diverged",
                                                  primary=None, error="loss is NaN at epoch 2"))
    paths["failed"] = write(shard2, make_record(dataset="pathmnist", backbone="densenet121", strategy="auto_rgn",
                                                seed=3, status="failed", primary=None, error="CUDA out of memory"))
    # A duplicate of one cell (same config_hash) in the other shard: counts once.
    dup = json.loads(paths["pathmnist-resnet50-ft-0"].read_text())
    paths["duplicate"] = write(shard2, dup)
    # Other groups that must never mix with the main one.
    write(shard1, make_record(tier="smoke", synthetic=True, weights="random", strategy="ft", seed=0, primary=0.30))
    write(shard1, make_record(tier="smoke", synthetic=True, weights="random", strategy="lp", seed=0, primary=0.25))
    write(shard1, make_record(tier="smoke", synthetic=True, weights="random", strategy="lp", seed=1, primary=0.35))
    write(shard1, make_record(img_size=64, strategy="ft", seed=0, primary=0.99, gpu_mb=2048.0))
    write(shard1, make_record(weights="random", strategy="ft", seed=0, primary=0.11))
    write(shard1, make_record(weights="/weights/resnet50.pth", strategy="ft", seed=0, primary=0.12))
    # Files that are not valid records.
    paths["broken"] = shard1 / "quick" / "broken.json"
    paths["broken"].write_text("{not json")
    bad = make_record(strategy="ft", seed=9)
    del bad["costs"]
    paths["bad_schema"] = shard1 / "quick" / "bad_schema.json"
    paths["bad_schema"].write_text(json.dumps(bad))
    return paths


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """The grid, written once for the module (tests must not change it)."""
    results = tmp_path_factory.mktemp("grid") / "results"
    return results, build_grid(results)


def main_group(groups):
    return next(g for g in groups if g.key == GroupKey("quick", False, "pretrained", 28))


# ---------------------------------------------------------------------------------------------- statistics


def test_summarize_hand_computed():
    s = summarize([0.79, 0.80, 0.81])
    assert s.n == 3 and s.mean == pytest.approx(0.80)
    assert s.std == pytest.approx(0.01)
    half = 4.302652729749464 * 0.01 / math.sqrt(3)  # t(0.975, 2)
    assert s.ci == pytest.approx((0.80 - half, 0.80 + half))
    two = summarize([0.5, 0.7])
    assert two.std == pytest.approx(math.sqrt(0.02)) and two.ci is None  # n < 3: no CI
    one = summarize([0.4])
    assert one.mean == 0.4 and one.std is None and one.ci is None
    assert summarize([]).mean is None


def test_average_ranks_with_ties():
    assert average_ranks({"ft": 0.58, "lp": 0.55, "lp_ft": 0.61, "auto_rgn": 0.55}) == {
        "lp_ft": 1.0, "ft": 2.0, "lp": 3.5, "auto_rgn": 3.5}
    assert average_ranks({"a": 0.1 + 0.2, "b": 0.3, "c": 0.1}) == {"a": 1.5, "b": 1.5, "c": 3.0}  # float noise ties


def test_holm_and_pareto():
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert pareto_front({"lp": (2, 70), "ft": (10, 80), "slow_bad": (12, 75), "best": (12, 85)}) == {"lp", "ft", "best"}


def test_majority_flag_rules():
    maj = {"acc": 0.67, "balanced_acc": 1 / 7}
    assert majority_flag("multi-class", {"acc": 0.67, "balanced_acc": 0.3}, maj)  # acc == majority
    assert majority_flag("multi-class", {"acc": 0.70, "balanced_acc": 0.14}, maj)  # balanced acc at chance
    assert majority_flag("multi-class", {"acc": 0.70, "balanced_acc": 0.3}, maj) is None
    chest = {"acc": 0.947, "balanced_acc": 0.5}
    assert majority_flag(MULTI_LABEL, {"acc": 0.947, "auc": 0.77, "balanced_acc": 0.5}, chest) is None
    assert majority_flag(MULTI_LABEL, {"acc": 0.95, "auc": 0.5, "balanced_acc": 0.5}, chest)
    assert majority_flag(MULTI_LABEL, {"acc": 0.95, "auc": None, "balanced_acc": 0.5}, chest)


# ---------------------------------------------------------------------------------------------- loading


def test_load_reports_problems_and_dedups(grid):
    results, paths = grid
    inputs = load_inputs([results])
    reasons = {Path(p.path).name: p.reason for p in inputs.problems}
    assert "not valid JSON" in reasons["broken.json"]
    assert "costs" in reasons["bad_schema.json"]
    dup = [n for n in inputs.notes if n.kind == "duplicate"]
    assert len(dup) == 1 and dup[0].cell_id == "quick-pathmnist-resnet50-ft-seed0"
    hashes = [r.config_hash for r in inputs.runs]
    assert len(hashes) == len(set(hashes))
    assert len(inputs.runs) == 6 * 4 * 3 + 2 + 6


def test_benchmark_json_record_paths(grid, tmp_path):
    results, paths = grid
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"benchmarks": [
        {"name": "a", "extra_info": {"record_path": str(paths["pathmnist-resnet50-ft-1"])}},
        {"name": "b", "extra_info": {"record_path": "missing/record.json"}},
        {"name": "c", "extra_info": {}},
    ]}))
    inputs = load_inputs([], [bench])
    assert [r.cell_id for r in inputs.runs] == ["quick-pathmnist-resnet50-ft-seed1"]
    reasons = " | ".join(p.reason for p in inputs.problems)
    assert "record_path missing/record.json not found" in reasons and "no extra_info['record_path']" in reasons
    both = load_inputs([results], [bench])  # the same record through both routes counts once
    assert len(both.runs) == len(load_inputs([results]).runs)


def test_superseded_configuration_counts_once(tmp_path):
    old = make_record(seed=0, primary=0.5, finished="2025-01-01T00:00:00+00:00")
    new = make_record(seed=0, primary=0.7, finished="2025-02-01T00:00:00+00:00", extra_hash="epochs changed")
    write(tmp_path / "a", old)
    write(tmp_path / "b", new)
    inputs = load_inputs([tmp_path])
    assert [r.record["metrics"]["test"]["balanced_acc"] for r in inputs.runs] == [0.7]
    assert [n.kind for n in inputs.notes] == ["superseded"]


# ---------------------------------------------------------------------------------------------- aggregates


def test_groups_are_separated(grid):
    results, _ = grid
    groups = aggregate(load_inputs([results]).runs)
    keys = [g.key for g in groups]
    assert keys == [GroupKey("smoke", True, "random", 28), GroupKey("quick", False, "pretrained", 28),
                    GroupKey("quick", False, "pretrained", 64), GroupKey("quick", False, "random", 28),
                    GroupKey("quick", False, "file", 28)]
    assert "SYNTHETIC data, RANDOM weights: not a measure of real transfer" in groups[0].key.label
    main = main_group(groups)
    row = next(r for r in main.rows if (r.dataset, r.backbone, r.strategy) == ("pathmnist", "resnet50", "ft"))
    assert row.summary.n == 3 and row.mean == pytest.approx(0.80)  # 64 px / random / file / smoke not mixed in
    smoke_lp = next(r for r in groups[0].rows if r.strategy == "lp")
    assert smoke_lp.summary.n == 2 and smoke_lp.mean == pytest.approx(0.30) and smoke_lp.summary.ci is None
    smoke_ft = next(r for r in groups[0].rows if r.strategy == "ft")
    assert smoke_ft.summary.n == 1 and smoke_ft.summary.std is None


def test_aggregates_hand_computed(grid):
    results, _ = grid
    main = main_group(aggregate(load_inputs([results]).runs))
    half = 4.302652729749464 * 0.01 / math.sqrt(3)
    for r in main.rows:
        expected = MEANS[(r.dataset, r.backbone)][r.strategy]
        assert r.summary.n == 3 and r.seeds == [0, 1, 2]
        assert r.mean == pytest.approx(expected)
        assert r.summary.std == pytest.approx(0.01)
        assert r.summary.ci == pytest.approx((expected - half, expected + half))
        assert r.metric == "auc"  # the ranking metric, for every task
    derma_lp = next(r for r in main.rows if (r.dataset, r.backbone, r.strategy) == ("dermamnist", "resnet50", "lp"))
    assert [x.cell_id for x in derma_lp.diverged] == ["quick-pathmnist-resnet50-lp-seed3".replace("path", "derma")]
    assert [x.seed for x, _ in derma_lp.majority] == [0]  # acc 0.60 <= majority 0.67
    failed = next(r for r in main.rows if (r.dataset, r.backbone, r.strategy) == ("pathmnist", "densenet121",
                                                                                   "auto_rgn"))
    assert len(failed.failed) == 1 and failed.summary.n == 3
    assert main.status_counts() == {"ok": 72, "diverged": 1, "failed": 1}
    ft = next(r for r in main.rows if r.strategy == "ft")
    assert ft.costs["train_s"] == 10.0 and ft.costs["peak_mem_kind"] == "host" and ft.costs["peak_mem_mb"] == 1500


def test_ranks_deltas_and_wilcoxon(grid):
    results, _ = grid
    main = main_group(aggregate(load_inputs([results]).runs))
    cases = {c.key: c for c in main.cases}
    assert cases[("dermamnist", "densenet121")].ranks == pytest.approx(
        {"lp_ft": 1.0, "ft": 2.0, "lp": 3.5, "auto_rgn": 3.5})
    assert cases[("chestmnist", "densenet121")].deltas["auto_rgn"] == pytest.approx(0.11)
    # Ranks count failures: the diverged LP seed of dermamnist/resnet50 scores the chance AUC (0.5) as a fourth
    # seed, so LP ranks by (3 * .55 + .5) / 4 there; the failed Auto-RGN seed of pathmnist/densenet121 likewise.
    ranked = {k: dict(v) for k, v in MEANS.items()}
    ranked[("dermamnist", "resnet50")]["lp"] = (3 * .55 + .5) / 4
    ranked[("pathmnist", "densenet121")]["auto_rgn"] = (3 * .80 + .5) / 4
    expected = {s: [] for s in ("ft", "lp", "lp_ft", "auto_rgn")}
    for means in ranked.values():
        for s, r in average_ranks(means).items():
            expected[s].append(r)
    for s, rs in expected.items():
        assert main.avg_ranks[s] == (pytest.approx(sum(rs) / len(rs)), 6)
    assert main.avg_ranks["lp"][0] == pytest.approx((4 + 4 + 4 + 3.5 + 4 + 4) / 6)
    assert main.avg_ranks["auto_rgn"][0] == pytest.approx((1 + 3 + 1 + 3.5 + 1 + 1) / 6)  # 1 with failures dropped
    # The test's unit is the dataset: per dataset the mean over its two backbones of the case Δ, then a t-test
    # over the three datasets (not over the six cases).
    datasets = sorted({d for d, _ in MEANS})
    # failures counted: the diverged LP seed (dermamnist/resnet50) and the failed Auto-RGN seed
    # (pathmnist/densenet121) score the chance AUC, 0.5, each as a fourth seed of its row
    counted = {k: dict(v) for k, v in MEANS.items()}
    counted[("dermamnist", "resnet50")]["lp"] = (3 * .55 + .5) / 4
    counted[("pathmnist", "densenet121")]["auto_rgn"] = (3 * .80 + .5) / 4
    for s in ("lp", "lp_ft", "auto_rgn"):
        for key, means in (("", counted), ("ok_only", MEANS)):
            per_dataset = [sum(means[(d, b)][s] - means[(d, b)]["ft"] for b in ("resnet50", "densenet121")) / 2
                           for d in datasets]
            ref = sps.ttest_1samp(per_dataset, 0.0)
            t = main.tests[s][key] if key else main.tests[s]
            assert t["n"] == 3 and t["unit"] == "datasets" and t["cases"] == 6
            assert t["p"] == pytest.approx(ref.pvalue, rel=1e-6) and t["mean"] == pytest.approx(sum(per_dataset) / 3)
    family = {s: main.tests[s]["p"] for s in ("lp", "lp_ft", "auto_rgn")}
    assert {s: main.tests[s]["p_holm"] for s in family} == pytest.approx(holm(family))
    assert main.tests["lp"]["p_holm"] >= main.tests["lp"]["p"]
    within = {(w["dataset"], w["backbone"]): w for w in main.tests["lp"]["within_case"]}
    assert within[("pathmnist", "resnet50")]["p"] < 0.05 and within[("pathmnist", "resnet50")]["seeds"] == [3, 3]
    smoke = aggregate(load_inputs([results]).runs)[0]
    assert smoke.tests["lp"]["note"].startswith("not testable: n = 1 dataset (")
    assert smoke.tests["lp"]["p"] is None and smoke.tests["lp"]["n"] == 1


def test_claims(grid):
    results, _ = grid
    main = main_group(aggregate(load_inputs([results]).runs))
    lpft, rgn, best = main.claims
    # Claim 1: per dataset the share of its two backbones where LP-FT wins: pathmnist 2/2, the others 1/2.
    assert lpft.details["share_by_dataset"] == {"chestmnist": 0.5, "dermamnist": 0.5, "pathmnist": 1.0}
    assert (lpft.details["wins"], lpft.details["cases"], lpft.details["datasets"]) == (4, 6, 3)
    assert lpft.details["share"] == pytest.approx(2 / 3) and lpft.n == 3 and lpft.unit == "datasets"
    # one dataset away from 1/2: the sign-flip test can give p = 0.5 at best, so it cannot reject
    assert lpft.details["min_p"] == 0.5 and lpft.verdict.startswith("not testable: n = 3 datasets")
    assert "4 of 6 cases" in lpft.ours
    # Claim 2: every modality has one dataset: not testable at the dataset unit, whatever the gains.
    mods = {m["modality"]: m for m in rgn.details["modalities"]}
    assert mods["x-ray"]["largest_case"]["gain"] == pytest.approx(0.11)
    assert mods["x-ray"]["gain"] == pytest.approx((0.02 + 0.11) / 2) and mods["x-ray"]["datasets"] == 1
    assert rgn.verdict.startswith("not testable: no modality has >= 3 datasets") and not rgn.supported
    # Claim 3: the alternatives' gain = the mean Δ of LP, LP-FT and Auto-RGN (no best-of selection); without
    # failures it is the hand-computed mean of MEANS, with failures the failed Auto-RGN seed scores 1/9.
    alts = ("lp", "lp_ft", "auto_rgn")

    def gain(bb, means):
        return sum(means[(d, bb)][s] - means[(d, bb)]["ft"] for d in ("pathmnist", "dermamnist", "chestmnist")
                   for s in alts) / 9
    counted = {k: dict(v) for k, v in MEANS.items()}
    counted[("pathmnist", "densenet121")]["auto_rgn"] = (3 * .80 + 1 / 9) / 4
    counted[("dermamnist", "resnet50")]["lp"] = (3 * .55 + 1 / 7) / 4
    per_bb = {b["backbone"]: b for b in best.details["backbones"]}
    without = {b["backbone"]: b for b in best.details["without_failures"]["backbones"]}
    for bb in ("resnet50", "densenet121"):
        assert without[bb]["gain"] == pytest.approx(gain(bb, MEANS))
        assert per_bb[bb]["gain"] == pytest.approx(gain(bb, counted))
    assert not best.supported and [t["against"] for t in best.details["tests"]] == ["0", "resnet50"]
    assert all(t["unit"] == "datasets" and t["n"] == 3 for t in best.details["tests"])
    smoke = aggregate(load_inputs([results]).runs)[0]  # no LP-FT, no Auto-RGN, one backbone
    assert [c.verdict.split(":")[0] for c in smoke.claims] == ["not enough results"] * 3


def test_claims_use_the_study_strategies_on_the_cases_they_share(tmp_path: Path) -> None:
    means = {("pathmnist", "resnet50"): {"ft": .80, "lp_ft": .70, "lp": .60, "auto_rgn": .81, "lora": .99},
             ("pathmnist", "vgg19"): {"ft": .80, "lp_ft": .70, "lp": .60, "auto_rgn": .79, "lora": .99},
             ("dermamnist", "resnet50"): {"ft": .50, "lp_ft": .90, "auto_rgn": .95, "lora": .99},  # no LP here
             ("dermamnist", "densenet121"): {"ft": .50, "lp_ft": .90, "lp": .60, "auto_rgn": .70}}
    for (dataset, backbone), by in means.items():
        for strategy, mean in by.items():
            write(tmp_path, make_record(dataset=dataset, backbone=backbone, strategy=strategy, primary=mean))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    assert group.study_strategies == ["ft", "lp", "lp_ft", "auto_rgn"]
    assert {c.key for c in group.study_cases()} == {("pathmnist", "resnet50"), ("pathmnist", "vgg19"),
                                                     ("dermamnist", "densenet121")}
    lpft, rgn, best = group.claims
    assert (lpft.details["wins"], lpft.details["cases"]) == (1, 3) and "n = 2 datasets" in lpft.verdict
    assert rgn.details["cases"] == 3 and "n = 1 dataset" in rgn.short
    per_bb = {b["backbone"]: b for b in best.details["backbones"]}
    assert per_bb["resnet50"]["best_alternative_descriptive"] == "auto_rgn"  # never LoRA
    assert per_bb["resnet50"]["datasets"] == 1 and "lora" not in best.details["alternatives"]
    assert per_bb["densenet121"]["gain"] == pytest.approx((0.40 + 0.10 + 0.20) / 3)


def test_claims_count_failures_and_say_so(tmp_path: Path) -> None:
    """A strategy whose every seed failed on a case is in the claims with failures counted (chance score), and
    the case leaves them when failures are dropped; both verdicts are shown."""
    for d in ("pathmnist", "dermamnist", "chestmnist", "octmnist", "bloodmnist"):
        for seed in range(2):
            write(tmp_path, make_record(dataset=d, strategy="ft", seed=seed, primary=0.7 + 0.01 * seed))
            status = "failed" if d == "pathmnist" else "ok"
            write(tmp_path, make_record(dataset=d, strategy="lp_ft", seed=seed, primary=0.8, status=status,
                                        error="boom" if status == "failed" else None))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    lpft = group.claims[0]
    assert lpft.details["cases"] == 5 and lpft.details["without_failures"]["cases"] == 4
    assert lpft.details["share_by_dataset"]["pathmnist"] == 0.0  # 1/9 < FT: the failed strategy loses
    assert lpft.verdict_without_failures.startswith("not testable: n = 4 datasets")
    assert lpft.verdict.startswith("not distinguishable from noise") and "n = 5 datasets" in lpft.verdict
    from medft_bench.leaderboard.tables import claims_table

    table = claims_table(group)
    assert "verdict without failures" in table.headers


def test_details_show_drift_and_a_kept_start(tmp_path: Path) -> None:
    write(tmp_path, make_record(strategy="ft", drift={"train": 0.12}))
    rec = make_record(strategy="lp_ft", drift={"lp": 0.0, "ft": 0.0}, best_epoch=-1)
    rec["epochs"] = [{"stage": "lp", "epochs": 0}, {"stage": "ft", "start": True}]
    write(tmp_path, rec)
    write(tmp_path, make_record(strategy="lp"))  # an older record without drift
    [group] = aggregate(load_inputs([tmp_path]).runs)
    from medft_bench.leaderboard.tables import details_table

    table = details_table(group)
    col = table.headers.index("drift %")
    rows = {str(r[2]): r for r in table.rows}
    assert str(rows["FT"][col]) == "12.00" and str(rows["LP-FT"][col]) == "0.00" and str(rows["LP"][col]) == "—"
    assert "kept stage start 1/1" in str(rows["LP-FT"][-1])


def test_surgical_blocks_are_rows_of_their_own(tmp_path: Path) -> None:
    """Lee et al. report surgical fine-tuning per block: a cell run with another block is another row, not a newer
    configuration superseding the default block's."""
    for seed in (0, 1):
        write(tmp_path, make_record(strategy="surgical", seed=seed, primary=0.6))
        rec = make_record(strategy="surgical", seed=seed, primary=0.7, extra_hash="block=2",
                          finished="2025-04-01T12:00:00+00:00")
        rec["strategy"]["variant"] = "block=2"
        validate(rec, rec["cell_id"])
        write(tmp_path, rec)
    inputs = load_inputs([tmp_path])
    assert not inputs.notes and len(inputs.runs) == 4
    [group] = aggregate(inputs.runs)
    means = {group.label(r.strategy): r.summary.mean for r in group.rows}
    assert means == {"surgical": pytest.approx(0.6), "surgical (block=2)": pytest.approx(0.7)}


def test_details_flag_an_adaptive_epoch_that_trained_the_head_alone(tmp_path: Path) -> None:
    for seed, counts in ((0, [0, 12]), (1, [9, 12])):
        rec = make_record(strategy="auto_snr", seed=seed)
        rec["epochs"] = [{"stage": "train", "adaptive_backbone_tensors": c} for c in counts]
        write(tmp_path, rec)
    [group] = aggregate(load_inputs([tmp_path]).runs)
    from medft_bench.leaderboard.tables import details_table

    [row] = details_table(group).rows
    assert "head-only epochs in 1/2" in str(row[-1])


def test_claim_1_counts_lp_ft_seeds_that_kept_their_probe(tmp_path: Path) -> None:
    for seed, best_epoch in enumerate((-1, 2, -1)):
        write(tmp_path, make_record(strategy="ft", seed=seed, primary=0.7))
        write(tmp_path, make_record(strategy="lp_ft", seed=seed, primary=0.75, best_epoch=best_epoch))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    claim = group.claims[0]
    assert claim.details["kept_starts"] == {"kept": 2, "seeds": 3}
    assert "kept its probe" in claim.ours and "in 2 of 3 seeds" in claim.ours



def test_claims_against_ft_name_their_norm_mode_bundle_and_the_ft_eval_control(tmp_path: Path) -> None:
    # LP-FT +10 pp over train-mode FT, but only +2 pp over FT in LP-FT's own norm mode: the claim must say both.
    for strategy, mean in {"ft": .70, "lp_ft": .80, "auto_rgn": .75}.items():
        write(tmp_path, make_record(strategy=strategy, primary=mean))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    assert all("no FT (eval BN) control" in c.ours for c in group.claims[:2])
    write(tmp_path, make_record(strategy="ft_eval", primary=.78, in_study=False))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    lpft, rgn = group.claims[:2]
    assert lpft.details["norm_mode_control"]["delta_vs_control"] == pytest.approx(0.02)
    assert lpft.details["norm_mode_control"]["delta_vs_ft"] == pytest.approx(0.10)
    assert "against the FT (eval BN) control, the norm mode held equal: +2.00 pp" in lpft.ours
    assert "-3.00 pp (against FT +5.00 pp" in rgn.ours
    assert "ft_eval" not in group.study_strategies  # a control, never one of the study's eight

def test_frozen_reference_table_flags_an_unconverged_probe_and_lp_ft_below_lp(tmp_path: Path) -> None:
    from medft_bench.leaderboard.tables import frozen_reference_table

    for strategy, mean in {"knn": .90, "lp": .80, "lp_ft": .78, "ft": .85, "bitfit": .70}.items():
        write(tmp_path, make_record(strategy=strategy, primary=mean))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    table = frozen_reference_table(group)
    [row] = table.rows
    cells = dict(zip(table.headers, row))
    assert str(cells["LP − kNN"]) == "-10.00" and cells["LP − kNN"].style == "warn"
    assert str(cells["LP-FT − LP"]) == "-2.00" and cells["LP-FT − LP"].style == "warn"
    assert str(cells["below LP"]) == "LP-FT, BitFit"
    assert str(cells["cos"]) == "—"  # records without head statistics


def test_frozen_reference_table_marks_parallel_features(tmp_path: Path) -> None:
    from medft_bench.leaderboard.tables import frozen_reference_table

    for backbone, cosines in {"vgg19": (0.97, 0.99), "resnet50": (0.30, 0.34)}.items():
        for seed, cos in enumerate(cosines):
            for strategy in ("knn", "lp"):
                rec = make_record(strategy=strategy, backbone=backbone, seed=seed)
                rec["head"] = {"init": "scaled", "feature_rms_norm": 1.0, "feature_cosine": cos}
                write(tmp_path, rec)
    [group] = aggregate(load_inputs([tmp_path]).runs)
    table = frozen_reference_table(group)
    col = table.headers.index("cos")
    got = {str(r[1]): r[col] for r in table.rows}
    assert str(got["vgg19"]) == "0.98" and got["vgg19"].style == "warn"  # the mean over seeds
    assert str(got["resnet50"]) == "0.32" and got["resnet50"].style is None


def test_metric_option(grid):
    results, _ = grid
    main = main_group(aggregate(load_inputs([results]).runs, metric_override="acc"))
    assert {r.metric for r in main.rows} == {"acc"}
    chest_ft = next(r for r in main.rows if (r.dataset, r.strategy) == ("chestmnist", "ft"))
    assert chest_ft.mean == pytest.approx(0.95)


# ---------------------------------------------------------------------------------------------- outputs


def _snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.fixture(scope="module")
def published(grid, tmp_path_factory) -> tuple[Path, int, str, dict[str, bytes]]:
    """The CLI run once on the grid, in plain mode: (out dir, exit code, stdout, the files' bytes)."""
    import contextlib
    import io

    results, _ = grid
    out = tmp_path_factory.mktemp("board") / "leaderboard"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([str(results), "--out", str(out), "--plain", "--all-metrics", "--width", "250"])
    return out, rc, buf.getvalue(), _snapshot(out)


def test_publish_is_deterministic(grid, published):
    results, _ = grid
    out, rc, _, first = published
    assert rc == 0
    assert main([str(results), "--out", str(out), "--quiet", "--all-metrics"]) == 0
    assert _snapshot(out) == first  # byte-identical, PNGs included

    names = set(first)
    assert {"README.md", "quick.md", "smoke.md", "references.md", "summary.json"} <= names
    pngs = [n for n in names if n.endswith(".png")]
    assert "quick-28px-real-pretrained-delta.png" in pngs and "quick-28px-real-pretrained-pareto.png" in pngs
    for n in pngs:
        assert first[n][:8] == b"\x89PNG\r\n\x1a\n" and len(first[n]) > 1000
        assert b"Software" not in first[n]

    index = first["README.md"].decode()
    assert "broken.json" in index and "not valid JSON" in index and "bad_schema.json" in index
    assert "SYNTHETIC data, RANDOM weights: not a measure of real transfer" in index
    assert "2025-03-01T12:00:00+00:00" in index and "0123456789ab (clean)" in index
    quick = first["quick.md"].decode()
    for png in ("quick-28px-real-pretrained-delta.png", "quick-28px-real-pretrained-pareto.png"):
        assert f"]({png})" in quick
    assert "Published reference numbers (not measured by this suite)" in quick
    assert "quick-dermamnist-resnet50-lp-seed3" in quick and "loss is NaN" in quick
    assert "quick-pathmnist-densenet121-auto_rgn-seed3" in quick and "CUDA out of memory" in quick
    assert "**85.00 ± 2.48 (3)**" in quick  # best in its case
    summary = json.loads(first["summary.json"])
    assert {Path(p["path"]).name for p in summary["problems"]} == {"broken.json", "bad_schema.json"}
    g = next(g for g in summary["groups"] if g["slug"] == "quick-28px-real-pretrained")
    row = next(r for r in g["rows"] if (r["dataset"], r["backbone"], r["strategy"]) == ("pathmnist", "resnet50", "ft"))
    assert row["mean"] == pytest.approx(0.8) and row["n"] == 3 and row["std"] == pytest.approx(0.01)


def test_stale_files_removed(tmp_path):
    results = tmp_path / "results"
    write(results, make_record(strategy="ft", seed=0, primary=0.8))
    smoke = write(results, make_record(tier="smoke", synthetic=True, weights="random", seed=0, primary=0.3))
    out = tmp_path / "board"
    assert main([str(results), "--out", str(out), "--quiet"]) == 0
    assert (out / "smoke.md").exists() and (out / "smoke-28px-synthetic-random-pareto.png").exists()
    smoke.unlink()
    (out / "notes.txt").write_text("mine")
    assert main([str(results), "--out", str(out), "--quiet"]) == 0
    assert not (out / "smoke.md").exists() and not (out / "smoke-28px-synthetic-random-pareto.png").exists()
    assert (out / "quick.md").exists() and (out / "notes.txt").exists()  # files it did not write are left alone
    inside = tmp_path / "results" / "board"  # output inside the results: its summary.json is not a record
    assert main([str(results), "--out", str(inside), "--quiet"]) == 0
    first = _snapshot(inside)
    assert main([str(results), "--out", str(inside), "--quiet"]) == 0
    assert _snapshot(inside) == first and "summary.json" not in first["README.md"].decode()


def test_records_inside_the_out_folder_are_read_not_dropped(tmp_path: Path) -> None:
    """Issue 27: ``--out`` inside the results folder silently dropped the records under it."""
    results = tmp_path / "results"
    write(results, make_record(strategy="ft", seed=0, primary=0.8))
    write(results, make_record(strategy="lp", seed=0, primary=0.7))
    assert main([str(results), "--out", str(results / "quick"), "--quiet"]) == 0  # the folder the records are in
    for _ in range(2):  # and again, with the pages now beside the records
        doc = json.loads((results / "quick" / "summary.json").read_text())
        assert doc["groups"][0]["cases"][0]["means"] == {"ft": 0.8, "lp": 0.7}
        assert main([str(results), "--out", str(results / "quick"), "--quiet"]) == 0


def test_tier_names_that_slug_alike_get_pages_of_their_own(tmp_path: Path) -> None:
    """Issue 27: "my tier" and "my-tier" (and "Smoke" beside "smoke" on a case-insensitive disk) wrote one page."""
    from medft_bench.leaderboard.group_key import tier_slug

    names = ["my tier", "my-tier", "my_tier", "Smoke", "smoke", "readme", "tier-readme", "", ".."]
    assert len({tier_slug(n).lower() for n in names}) == len(names)
    assert tier_slug("smoke") == "smoke" and tier_slug("quick") == "quick"  # plain names keep their pages
    results = tmp_path / "results"
    for tier in ("my tier", "my-tier"):
        write(results, make_record(tier=tier, strategy="ft", primary=0.8))
    assert main([str(results), "--out", str(tmp_path / "board"), "--quiet"]) == 0
    pages = {json.loads((tmp_path / "board" / "summary.json").read_text())["groups"][i]["page"] for i in (0, 1)}
    assert len(pages) == 2 and all((tmp_path / "board" / p).is_file() for p in pages)


def test_references_are_labelled_and_separate():
    from medft_bench.leaderboard.references import load_references

    refs = load_references()
    ids = {s["id"] for s in refs["sources"]}
    assert {"medmnist_v2_table3", "medmnist_plus_average", "medmnist_plus_densenet121"} <= ids
    for s in refs["sources"]:
        assert s["paper"] and s["table"] and s["protocol"] and s["rows"]
    v2 = next(s for s in refs["sources"] if s["id"] == "medmnist_v2_table3")
    assert {"dataset": "pathmnist", "model": "ResNet-18 (28)", "auc": 0.983, "acc": 0.907} in v2["rows"]
    dn = next(s for s in refs["sources"] if s["id"] == "medmnist_plus_densenet121")
    assert {"dataset": "chestmnist", "scheme": "E2E", "acc_28": 94.77, "acc_224": 94.84, "auc_28": 75.93,
            "auc_224": 82.22} in dn["rows"]


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_plain_output(published):
    _, rc, out, _ = published
    assert rc == 0
    assert "\x1b[" not in out  # no colour codes
    study = "study protocol (one fixed learning rate)"
    assert f"Results by case — quick tier, 28 px, {study} — real data, pretrained weights" in out
    assert f"smoke tier, 28 px, {study} — SYNTHETIC data, RANDOM weights: not a measure of real transfer" in out
    assert "85.00 ± 2.48 (3) *" in out and "* best in its case" in out
    assert "broken.json" in out and "macro F1" in out
    assert "LP-FT beats FT in 4 of 6 cases" in out and "not testable: n = 3 datasets" in out


def test_cli_no_valid_records(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "junk.json").write_text("[]")
    assert main([str(empty), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    first, *rest = err.splitlines()
    assert first.startswith("python -m medft_bench.leaderboard: error: no valid result records")
    assert any("junk.json" in line for line in rest) and "Traceback" not in err
    assert not (tmp_path / "b").exists()
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "b")]) == 1
    assert "no such file or directory" in capsys.readouterr().err


def test_cli_subprocess_exit_code(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bad = subprocess.run([sys.executable, "-m", "medft_bench.leaderboard", "--out", str(tmp_path / "c")],
                         capture_output=True, text=True, cwd=elsewhere, timeout=120)  # default results/ is absent
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("python -m medft_bench.leaderboard: error: no valid result records in results")


def test_terminal_output_modes(grid):
    import io

    from rich.console import Console

    from medft_bench.leaderboard.metadata import run_metadata
    from medft_bench.leaderboard.render_rich import print_report, render_rich

    results, _ = grid
    inputs = load_inputs([results])
    groups = aggregate(inputs.runs)
    meta = run_metadata(inputs.runs)
    buf = io.StringIO()
    render_rich(groups, inputs, meta, console=Console(file=buf, force_terminal=True, width=250,
                                                      color_system="standard"))
    text = buf.getvalue()
    assert "\x1b[" in text and "Δ against FT" in text
    assert "\x1b[32m+3.00" in text or "\x1b[32m+2.00" in text  # a positive delta in green
    assert "\x1b[31m-" in text  # a negative delta in red
    plain = io.StringIO()  # not a terminal: plain text without colour codes
    print_report(groups, inputs, meta, stream=plain)
    assert "\x1b[" not in plain.getvalue() and "Results by case" in plain.getvalue()


# ---------------------------------------------------------------------------------------------- issue 13, item 5


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_metric_is_a_skipped_file_not_a_nan_rank(tmp_path, constant):
    for strategy, primary in (("ft", 0.6), ("lp", 0.5)):
        for seed in (0, 1):
            write(tmp_path / "results", make_record(dataset="dermamnist", strategy=strategy, seed=seed,
                                                    primary=primary + seed / 100))
    edited = write(tmp_path / "results", make_record(dataset="dermamnist", strategy="lp_ft", seed=0, primary=0.7))
    edited.write_text(edited.read_text().replace('"balanced_acc": 0.7', f'"balanced_acc": {constant}'))
    inputs = load_inputs([tmp_path / "results"])
    assert [(Path(p.path).name, p.reason) for p in inputs.problems] == [
        (edited.name, f"not valid JSON (non-finite number {constant}: JSON has no NaN or Infinity (a metric is a "
                      "number or null))")]
    assert "lp_ft" not in {r.strategy for r in inputs.runs}
    (group,) = aggregate(inputs.runs)
    (case,) = group.cases
    assert case.ranks == {"ft": 1.0, "lp": 2.0}
    assert all(math.isfinite(rank) for rank, _ in group.avg_ranks.values())
    out = tmp_path / "board"
    assert main([str(tmp_path / "results"), "--out", str(out), "--quiet"]) == 0
    index = (out / "README.md").read_text()
    assert edited.name in index and f"non-finite number {constant}" in index


def test_schema_refuses_non_finite_and_out_of_range_metrics():
    from medft_bench.errors import RecordError

    for where, value in ((("metrics", "test", "auc"), float("nan")), (("metrics", "val", "acc"), float("inf")),
                         (("costs", "train_s"), float("nan")), (("metrics", "test", "balanced_acc"), 85.0)):
        record = make_record()
        target = record
        for key in where[:-1]:
            target = target[key]
        target[where[-1]] = value
        with pytest.raises(RecordError, match="/".join(where)):
            validate(record)


# ------------------------------------------------------------------------------ issue 14: what the user sees

WIDE = ["ft", "lp", "gu_last_first", "gu_first_last", "lp_ft", "l2_sp", "l1_sp", "auto_rgn", "auto_snr", "surgical",
        "llrd", "bitfit", "norm_only", "lora", "knn"]
WIDE_LABELS = {"auto_snr": "Auto-SNR", "surgical": "surgical", "llrd": "LLRD", "norm_only": "norm-only",
               "lora": "LoRA"}


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every strategy on two datasets x two backbones: tables wider than any terminal."""
    root = tmp_path_factory.mktemp("wide") / "results"
    for d, dataset in enumerate(("pathmnist", "dermamnist")):
        for b, backbone in enumerate(("resnet50", "densenet121")):
            for i, s in enumerate(WIDE):
                rec = make_record(dataset=dataset, backbone=backbone, strategy=s, primary=0.5 + 0.02 * i + 0.01 * d,
                                  train_s=1.0 + i + b, drift={"ft": 0.1}, seed=0)
                rec["strategy"]["label"] = WIDE_LABELS.get(s, rec["strategy"]["label"])
                write(root, rec)
    return root


@pytest.mark.parametrize("width", [80, 100, 200])
def test_terminal_tables_fit_the_width_and_keep_every_column(wide, width):
    import io

    from rich.console import Console

    from medft_bench.leaderboard.metadata import run_metadata
    from medft_bench.leaderboard.render_rich import plain_table, render_plain, render_rich, rich_tables
    from medft_bench.leaderboard.tables import details_table, group_tables

    inputs = load_inputs([wide])
    (group,) = aggregate(inputs.runs)
    meta = run_metadata(inputs.runs)
    console = Console(file=io.StringIO(), width=width, color_system=None)
    render_rich(groups=[group], inputs=inputs, meta=meta, all_metrics=True, console=console)
    rich_text = console.file.getvalue()
    plain_text = render_plain([group], inputs, meta, all_metrics=True, width=width)
    for text in (rich_text, plain_text):
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width, max(lines, key=len)
        assert "…" not in text  # nothing cut short
    labels = {group.label(s) for s in WIDE}
    assert len(labels) == 15 and {"LP-FT", "Auto-SNR", "norm-only", "kNN"} <= labels
    for table in [*group_tables(group, all_metrics=True), details_table(group, all_metrics=True)]:
        keys = [col.header for col in table.columns if col.key]
        parts = rich_tables(table, Console(file=io.StringIO(), width=width))
        shown = [[str(col.header) for col in rt.columns] for rt in parts]
        assert sorted(h for part in shown for h in part if h not in keys) == sorted(
            h for h in table.headers if h not in keys), table.key  # every column once, none dropped
        for part in shown:
            assert part[:len(keys)] == keys  # the key columns lead every part
        if len(parts) > 1:
            assert f"[part 1 of {len(parts)}" in str(parts[0].title)
        plain = plain_table(table, width)
        assert max(len(line) for line in plain.splitlines()) <= width
        for h in table.headers:
            if " " not in h:  # (headers with spaces may wrap in a wrapping column)
                assert h in plain, (table.key, h)
    n_parts = {w: len(rich_tables(group_tables(group)[0], Console(file=io.StringIO(), width=w))) for w in (100, 300)}
    assert n_parts[100] > n_parts[300] == 1  # 15 strategies: split at 100 columns, whole at 300


def test_recommendations_per_modality_and_backbone(tmp_path):
    from medft_bench.leaderboard.recommend import MARGIN, recommend

    # Two x-ray datasets, three seeds: a strategy's score per seed is its mean over the two datasets. L2-SP is
    # best on test but worst on validation: the selection ranks by validation, so it is not the best.
    values = {"ft": ((.70, .71, .72), (.60, .61, .62)), "lp_ft": ((.84, .85, .87), (.72, .73, .74)),
              "lp": ((.838, .848, .869), (.718, .728, .739)), "l2_sp": ((.90, .91, .92), (.80, .81, .82))}
    val = {"ft": .80, "lp_ft": .90, "lp": .85, "l2_sp": .50}
    cost = {"ft": 10.0, "lp_ft": 14.0, "lp": 2.0, "l2_sp": 20.0}
    for strategy, per_dataset in values.items():
        for dataset, vals in zip(("chestmnist", "pneumoniamnist"), per_dataset):
            for seed, v in enumerate(vals):
                rec = make_record(dataset=dataset, strategy=strategy, seed=seed, primary=v, train_s=cost[strategy])
                rec["data"]["modality"] = "x-ray"
                rec["metrics"]["val"]["auc"] = val[strategy]
                write(tmp_path / "results", rec)
    (group,) = aggregate(load_inputs([tmp_path / "results"]).runs)
    (rec,) = recommend(group)
    assert (rec.modality, rec.backbone, rec.datasets) == ("x-ray", "resnet50", ["chestmnist", "pneumoniamnist"])
    per_seed = {s: [(a + b) / 2 for a, b in zip(*values[s])] for s in values}
    assert rec.selected_on == "validation" and rec.best.strategy == "lp_ft"  # by validation, not by test
    assert rec.noise.startswith("seeds only")  # these records kept no per-image predictions
    assert rec.best.mean == pytest.approx(sum(per_seed["lp_ft"]) / 3)  # reported: test
    half = sps.t.ppf(0.975, 2) * sps.tstd(per_seed["lp_ft"]) / math.sqrt(3)
    assert rec.best.score.half == pytest.approx(half)
    # each against the best: Games-Howell over the 4 strategies (Welch's variance and df per pair, no pairing by
    # seed; the studentized range), computed here from scipy's parts
    for s in ("ft", "lp", "l2_sp"):
        welch = sps.ttest_ind(per_seed[s], per_seed["lp_ft"], equal_var=False)
        v = rec.standing(s).versus
        assert v.p == pytest.approx(sps.studentized_range.sf(abs(welch.statistic) * math.sqrt(2), 4, welch.df),
                                    rel=1e-4)
        se = (sum(per_seed[s]) - sum(per_seed["lp_ft"])) / 3 / welch.statistic
        half = sps.studentized_range.ppf(0.95, 4, welch.df) / math.sqrt(2) * se
        assert v.diff.value == pytest.approx((sum(per_seed[s]) - sum(per_seed["lp_ft"])) / 3)
        assert v.diff.half == pytest.approx(half, rel=1e-3)  # its df rounded to 0.1 for the quantile
    assert rec.standing("ft").versus.below and not rec.standing("lp").versus.below
    assert rec.not_separable == ["lp_ft", "l2_sp", "lp"]  # the best, then by test mean
    assert [st.strategy for st in rec.standings] == ["lp_ft", "l2_sp", "lp", "ft"]
    # the cheapest of the set, LP: shown non-inferior only when its one-sided 95% lower bound is above -MARGIN
    d = rec.standing("lp").versus.diff
    lower = d.value - sps.t.ppf(0.95, d.df) * math.sqrt(d.var)
    assert rec.cheapest.strategy == "lp" and rec.cheapest_lower == pytest.approx(lower)
    assert rec.cheapest_shown is False and not lower > -MARGIN  # 3 seeds cannot show 1 pp here
    assert sum(st.picked for st in rec.standings) == pytest.approx(1.0) and rec.best.picked > 0.5

    out = tmp_path / "board"
    assert main([str(tmp_path / "results"), "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    (r,) = summary["groups"][0]["recommendations"]
    assert r["best"] == "lp_ft" and r["not_separable"] == ["lp_ft", "l2_sp", "lp"] and r["cheapest"] == "lp"
    assert r["cheapest_non_inferior"] is False and r["margin"] == MARGIN and r["selected_on"] == "validation"
    ft = next(st for st in r["standings"] if st["strategy"] == "ft")
    assert ft["minus_best"]["below"] and ft["minus_best"]["p"] == pytest.approx(rec.standing("ft").versus.p)
    assert (r["standings"][0]["peak_mem_mb"], r["standings"][0]["peak_mem_kind"]) == (1500.0, "host")
    index = (out / "README.md").read_text()
    assert "## Which strategy for my modality and backbone?" in index
    # the answer in one narrow table: the case stacked in its first column, every strategy, then the cheapest
    answer = index[index.index("| case | answer |"):].split("\n\n")[0].splitlines()[2:]
    assert [line.split(" | ")[:3] for line in answer] == [
        ["| x-ray", "best", "LP-FT"], ["| resnet50", "above", "L2-SP"], ["| chestmnist", "in set", "LP"],
        ["| pneumoniamnist", "below", "FT"], ["| ", "cheapest", "LP"]]
    assert answer[0].endswith("| 14.0s·1.0k |")  # train s, trainable parameters
    assert f"cannot tell (≥ {lower * 100:+.1f})" in answer[4]


def test_recommendation_without_ci_says_why(tmp_path):
    from medft_bench.leaderboard.recommend import recommend

    for s, v in (("ft", 0.8), ("lp", 0.7)):
        write(tmp_path, make_record(strategy=s, primary=v))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    (rec,) = recommend(group)
    # one seed: no estimate of the training noise, so no interval, nothing separable, no non-inferiority shown
    assert rec.best.strategy == "ft" and rec.best.score.half is None and rec.not_separable == ["ft", "lp"]
    assert rec.cheapest is None and rec.cheapest_shown is None  # FT, the best, is the cheapest (tie: FT first)


def test_csv_exports(grid, published):
    import csv

    results, _ = grid
    out, rc, _, files = published
    assert rc == 0
    records = list(csv.DictReader(io_text(files["records.csv"])))
    inputs = load_inputs([results])
    assert len(records) == len(inputs.runs)
    row = next(r for r in records if r["cell_id"] == "quick-pathmnist-resnet50-auto_rgn-seed2")
    assert row["group"] == "quick-28px-real-pretrained" and row["strategy_label"] == "Auto-RGN"
    assert float(row["value"]) == pytest.approx(0.86) and row["metric"] == "auc" and row["status"] == "ok"
    assert {r["status"] for r in records} == {"ok", "diverged", "failed"}
    aggregates = list(csv.DictReader(io_text(files["aggregates.csv"])))
    groups = aggregate(inputs.runs)
    assert len(aggregates) == sum(len(g.rows) for g in groups)
    agg = next(r for r in aggregates if (r["group"], r["dataset"], r["backbone"], r["strategy"])
               == ("quick-28px-real-pretrained", "pathmnist", "resnet50", "auto_rgn"))
    assert float(agg["mean"]) == pytest.approx(0.85) and agg["n"] == "3" and float(agg["rank"]) == 1.0
    assert float(agg["delta_vs_ft"]) == pytest.approx(0.05)


def io_text(data: bytes):
    import io

    return io.StringIO(data.decode("utf-8"))


def test_default_output_keeps_the_checkout_clean(tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    write(results, make_record(strategy="ft", primary=0.8))
    monkeypatch.chdir(tmp_path)
    assert main(["results", "--quiet"]) == 0
    assert (results / "leaderboard" / "README.md").is_file() and not (tmp_path / "leaderboard").exists()
    assert f"written to {Path('results') / 'leaderboard'}/" in capsys.readouterr().out
    assert main(["results", "--quiet"]) == 0  # its own output is not read back as records
    assert main(["results", "--out", "elsewhere", "--quiet"]) == 0  # nor another run's
    assert load_inputs([results]).problems == []
    assert "summary.json" not in (tmp_path / "elsewhere" / "README.md").read_text()
    assert main(["results", "--publish", "--quiet"]) == 0
    assert (tmp_path / "leaderboard" / "summary.json").is_file()
    assert "written to leaderboard/" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["results", "--publish", "--out", "x"])


def test_labels_come_from_the_records(tmp_path):
    plugin = make_record(strategy="my_plugin", primary=0.9)
    plugin["strategy"]["label"] = "My Plug-in"
    write(tmp_path, plugin)
    old = make_record(strategy="lp_ft", primary=0.8)
    del old["strategy"]["label"]  # written before strategies declared labels: the name is shown
    write(tmp_path, old)
    write(tmp_path, make_record(strategy="ft", primary=0.7))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    assert [group.label(s) for s in group.strategies] == ["FT", "lp_ft", "My Plug-in"]
    # the labels the built-in strategies declare (torch: tests/engine/test_strategies.py checks them)


def test_pareto_labels_do_not_overlap_and_axis_ends_at_100(tmp_path):
    import matplotlib
    from matplotlib.text import Text

    from medft_bench.leaderboard.plots import STYLE, answer_figure, pareto_means_figure

    # A cluster of near-identical points, costs over two decades (log axis), one at 100 %.
    for i, s in enumerate(WIDE):
        write(tmp_path, make_record(strategy=s, primary=1.0 if s == "knn" else 0.9 + 0.002 * i,
                                    train_s=0.5 if s == "knn" else 60.0 + i))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    with matplotlib.rc_context(STYLE):
        for fig in (answer_figure(group), pareto_means_figure(group)):
            fig.canvas.draw()
            renderer = fig.canvas.get_renderer()
            (ax,) = fig.axes
            assert ax.get_ylim()[1] <= 100.0 and ax.get_xscale() == "log"
            texts = [t for t in ax.texts if t.get_text()]
            assert sorted(t.get_text() for t in texts) == sorted(group.label(s) for s in WIDE)
            boxes = [Text.get_window_extent(t, renderer) for t in texts]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:]:
                    assert not a.overlaps(b)
            assert not [t for t in ax.xaxis.get_minorticklabels() if t.get_text()]  # no minor labels
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["on the Pareto frontier (no strategy both cheaper and better)"]
        assert not ax.lines  # kNN alone is the frontier: no line


def test_the_answer_plot_draws_the_answer_tables_set_with_its_intervals(tmp_path):
    import matplotlib

    from medft_bench.leaderboard.plots import STYLE, answer_figure, pareto_figure

    for seed, noise in enumerate((0.0, 0.01, -0.01)):
        for s, v, cost in (("ft", 0.80, 10.0), ("lp", 0.70, 1.0), ("lp_ft", 0.805, 12.0), ("knn", 0.79, 0.5)):
            write(tmp_path, make_record(strategy=s, seed=seed, primary=v + noise * (s != "lp"), train_s=cost))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    (rec,) = group.analysis.recommendations
    with matplotlib.rc_context(STYLE):
        fig = pareto_figure(group)  # one answer: its panel, not the averaged frontier
        (ax,) = fig.axes
        filled = [c for c in ax.collections if c.__class__.__name__ == "PathCollection"
                  and tuple(c.get_facecolor()[0][:3]) != (1.0, 1.0, 1.0)]
        points = {tuple(c.get_offsets()[0]) for c in filled}
        expected = {(st.train_s, st.mean * 100) for st in rec.standings if st.strategy in rec.not_separable}
        assert {(round(x, 6), round(y, 6)) for x, y in points} == {(round(x, 6), round(y, 6)) for x, y in expected}
        bars = [c for c in ax.collections if c.__class__.__name__ == "LineCollection"]
        halves = sorted(round((seg[1][1] - seg[0][1]) / 2, 6) for c in bars for seg in c.get_segments())
        assert halves == sorted(round(st.score.half * 100, 6) for st in rec.standings)  # the table's intervals
        assert "LP" in {t.get_text() for t in ax.texts} and answer_figure(group) is not None


def test_compare_two_result_sets(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, make_record(strategy="ft", primary=0.80, train_s=10.0))
    write(b, make_record(strategy="ft", primary=0.83, train_s=12.0))  # same cell and configuration
    write(a, make_record(strategy="lp", primary=0.70))
    write(b, make_record(strategy="lp", primary=0.75, extra_hash="epochs=5"))  # another configuration
    write(a, make_record(strategy="lp_ft", primary=0.82))  # only in A
    write(b, make_record(strategy="knn", status="failed", primary=None, error="boom"))  # only in B

    from medft_bench.leaderboard.compare import compare, comparison_tables

    cmp = compare([a], [b])
    assert [(x.strategy, y.strategy) for x, y in cmp.matched] == [("ft", "ft")]
    assert [(x.strategy, y.strategy) for x, y in cmp.changed] == [("lp", "lp")]
    assert [r.strategy for r in cmp.only_a] == ["lp_ft"] and [r.strategy for r in cmp.only_b] == ["knn"]
    by_strategy, matched, *_ = comparison_tables(cmp, "a", "b")
    assert [[str(x) for x in row] for row in by_strategy.rows] == [["FT", "1", "1", "+3.00", "+3.00", "+3.00", "+20%"]]
    cells = dict(zip(matched.headers, map(str, matched.rows[0])))
    assert cells["A (a)"] == "80.00" and cells["B (b)"] == "83.00" and cells["B − A (pp)"] == "+3.00"
    assert cells["train s B vs A"] == "+20%"
    assert main(["compare", str(a), str(b), "--plain", "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "1 matched, 1 with another configuration, 1 only in A, 1 only in B" in out
    assert "Only in B (" in out and "failed" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["compare", str(a), str(empty)]) == 1
    assert "no valid result records in B" in capsys.readouterr().err


def test_compare_names_the_settings_that_differ(tmp_path, capsys):
    """A cell under another configuration lists what differs (config, strategy.hparams, data identity, code
    version) as path: A → B, never timestamps, hosts or timings, and escaped like every other cell."""
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, make_record(strategy="lp", primary=0.70))
    other = make_record(strategy="lp", primary=0.75, extra_hash="lr=1e-4")
    other["config"]["train"]["lr"] = 1e-4
    other["config"]["strategy_params"] = {"head_lr": 0.01}
    other["strategy"]["hparams"] = {"head_lr": 0.01, "note": f"x{CLEAR}"}  # head_lr: listed once
    other["data"]["md5"] = "1" * 32
    other["data"]["file"] = "/elsewhere/pathmnist.npz"  # another machine's data folder: not a setting
    other["code"]["version"] = "0.2.0"
    other["started"], other["finished"] = "2026-01-01T00:00:00+00:00", "2026-01-01T01:00:00+00:00"
    other["costs"]["train_s"] = 99.0
    other["environment"]["cpu"] = "Another CPU"
    write(b, other)
    write(a, make_record(strategy="ft", primary=0.80))
    write(b, make_record(strategy="ft", primary=0.80, extra_hash="same settings"))  # only the hash differs

    from medft_bench.leaderboard.compare import compare, comparison_tables, differences

    cmp = compare([a], [b])
    lp = next(p for p in cmp.changed if p[0].strategy == "lp")
    assert [str(d) for d in differences(*lp)] == [
        "config.strategy_params.head_lr: (absent) → 0.01", "config.train.lr: 0.001 → 0.0001",
        f"strategy.hparams.note: (absent) → x{CLEAR}", f"data.md5: {'0' * 32} → {'1' * 32}",
        "code.version: 0.1.0 → 0.2.0"]
    changed = next(t for t in comparison_tables(cmp, "a", "b") if t.key == "changed")
    lines = {n.split(": ", 1)[0]: n.split(": ", 1)[1] for n in changed.notes[1:]}  # a line per cell
    assert lines["quick-pathmnist-resnet50-ft-seed0"] == "none recorded"
    lp_line = lines["quick-pathmnist-resnet50-lp-seed0"]
    assert "config.train.lr: 0.001 → 0.0001; " in lp_line and "\\x1b[2J" in lp_line  # escaped like every text
    for hidden in ("started", "finished", "train_s", "cpu", "data.file", "strategy.hparams.head_lr"):
        assert hidden not in lp_line
    assert main(["compare", str(a), str(b), "--plain", "--width", "100"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out
    flat = " ".join(out.split())  # the notes wrap at the width, never cut
    assert "config.train.lr: 0.001 → 0.0001" in flat and "code.version: 0.1.0 → 0.2.0" in flat
    assert f"data.md5: {'0' * 32} → {'1' * 32}" in flat
    assert max(len(line) for line in out.splitlines()) <= 100


def test_compare_regression_gate(tmp_path, capsys):
    """--fail-on-drop PP exits 3 when a cell in both drops by more than PP points (same configuration or
    another), an ok cell is failed/diverged in B, or a cell is missing in B (unless --allow-missing); else 0."""
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, make_record(strategy="ft", primary=0.80))
    write(b, make_record(strategy="ft", primary=0.78))  # −2 pp, same configuration
    write(a, make_record(strategy="lp", primary=0.70))
    write(b, make_record(strategy="lp", primary=0.65, extra_hash="lr=1e-4"))  # −5 pp, another configuration
    write(a, make_record(strategy="lp_ft", primary=0.82))
    write(b, make_record(strategy="lp_ft", primary=0.90))  # better: never a regression
    write(a, make_record(strategy="knn", status="failed", primary=None, error="boom"))
    write(b, make_record(strategy="knn", status="failed", primary=None, error="boom"))  # failed in both: not one

    def gate(*extra: str) -> tuple[int, list[str]]:
        rc = main(["compare", str(a), str(b), "--quiet", *extra])
        out = capsys.readouterr().out.splitlines()
        return rc, [line for line in out if line.startswith(("REGRESSION", "not counted"))] + out[-1:]

    assert main(["compare", str(a), str(b), "--quiet"]) == 0  # no gate: an informative comparison only
    capsys.readouterr()
    assert gate("--fail-on-drop", "5") == (0, ["regression gate (--fail-on-drop 5 pp): passed, no regression"])
    rc, lines = gate("--fail-on-drop", "1.5")
    assert rc == 3 and lines == [
        "REGRESSION: quick-pathmnist-resnet50-ft-seed0: AUC A 80.00, B 78.00, drop 2.00 pp (more "
        "than 1.5)",
        "REGRESSION: quick-pathmnist-resnet50-lp-seed0 (another configuration): AUC A 70.00, B 65.00, "
        "drop 5.00 pp (more than 1.5)",
        "regression gate (--fail-on-drop 1.5 pp): FAILED, 2 regression(s)"]
    write(b, make_record(strategy="ft", status="diverged", primary=0.80, error="loss is NaN",
                               finished="2025-03-02T12:00:00+00:00"))
    write(a, make_record(strategy="l1_sp", primary=0.75))  # only in A
    rc, lines = gate("--fail-on-drop", "5")
    assert rc == 3 and lines == [
        "REGRESSION: quick-pathmnist-resnet50-ft-seed0: AUC A 80.00, B diverged (ok in A)",
        "REGRESSION: quick-pathmnist-resnet50-l1_sp-seed0: AUC A 75.00, B missing (only in A)",
        "regression gate (--fail-on-drop 5 pp): FAILED, 2 regression(s)"]
    rc, lines = gate("--fail-on-drop", "5", "--allow-missing")
    assert rc == 3 and lines[1].startswith("not counted: quick-pathmnist-resnet50-l1_sp-seed0: ")
    assert lines[-1] == "regression gate (--fail-on-drop 5 pp): FAILED, 1 regression(s)"
    write(b, make_record(strategy="ft", primary=0.80, finished="2025-03-03T12:00:00+00:00"))  # ok again
    assert gate("--fail-on-drop", "5", "--allow-missing")[0] == 0
    for bad in ("-1", "nan", "lots"):
        with pytest.raises(SystemExit) as exc:
            main(["compare", str(a), str(b), "--fail-on-drop", bad])
        assert exc.value.code == 2 and "--fail-on-drop takes percentage points" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", str(a), str(b), "--allow-missing"])
    assert "--allow-missing only applies with --fail-on-drop" in capsys.readouterr().err
    write(a, make_record(strategy="bitfit", status="failed", primary=None, error="boom"))  # failed and only in A
    rc, lines = gate("--fail-on-drop", "5", "--allow-missing")
    assert rc == 0 and not any("bitfit" in line for line in lines)  # nothing to regress from
    empty_a, one_b = tmp_path / "ea", tmp_path / "eb"
    write(empty_a, make_record(strategy="ft", status="failed", primary=None, error="boom"))
    write(one_b, make_record(strategy="ft", primary=0.8))
    rc = main(["compare", str(empty_a), str(one_b), "--quiet", "--fail-on-drop", "1"])
    assert rc == 3 and "FAILED, nothing compared" in capsys.readouterr().out  # a gate that saw nothing fails


def test_html_page_renders_in_headless_chromium(published, tmp_path):
    import shutil

    out, rc, _, files = published
    html = files["leaderboard.html"].decode()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert 'src="quick-28px-real-pretrained-pareto.png"' in html and "Which strategy for my modality" in html
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium): the HTML page is not opened in a browser")
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    url = (out / "leaderboard.html").resolve().as_uri()
    dom = subprocess.run([*args, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<table") == html.count("<table") > 10  # every table parsed into the DOM
    assert "85.00 ± 2.48 (3)" in dom.stdout
    shot = tmp_path / "page.png"
    run = subprocess.run([*args, f"--screenshot={shot}", "--window-size=1400,2000", url], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_html_page_has_contents_unique_ids_and_the_cost_plot_beside_the_answer(published):
    import re

    html = published[3]["leaderboard.html"].decode()
    ids = re.findall(r'id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) > 10  # every table of every group has an id of its own
    toc = html[html.index('<nav class="toc wide"'):html.index("</nav>", html.index('<nav class="toc wide"'))]
    links = re.findall(r'href="#([^"]+)"', toc)
    assert links and set(links) <= set(ids) and "recommendations" in links
    assert "<ul" not in toc and len(links) <= 8  # sections only, so that the answer is on the first screen
    subtocs = re.findall(r'<nav class="subtoc".*?</nav>', html)
    assert subtocs and all(set(re.findall(r'href="#([^"]+)"', n)) <= set(ids) for n in subtocs)
    answer = html[html.index('id="recommendations"'):]
    answer = answer[:answer.index("<h2", 1)]
    assert 'class="answer"' in answer and 'src="quick-28px-real-pretrained-pareto.png"' in answer
    assert html.index('id="recommendations"') < html.index('id="metadata"')  # the answer first, metadata last


def test_recommendations_keep_study_and_tuned_apart(tmp_path):
    from medft_bench.leaderboard.recommend import recommend

    for s, study, tuned in (("ft", 0.70, 0.80), ("lp_ft", 0.75, 0.77)):
        write(tmp_path, make_record(strategy=s, primary=study))
        write(tmp_path, tuned_record(strategy=s, primary=tuned, train_s=40.0))
    tuned_group, study_group = aggregate(load_inputs([tmp_path]).runs)  # the tuned protocol's group first
    assert (tuned_group.key.protocol, study_group.key.protocol) == ("tuned", "study")
    assert [r.best.strategy for r in recommend(study_group)] == ["lp_ft"]
    (tuned,) = recommend(tuned_group)
    assert tuned.best.strategy == "ft" and tuned.best.train_s == 40.0  # the whole sweep is the cost


def test_drift_is_read_in_stage_order_not_key_order(tmp_path: Path) -> None:
    """Records are written with sorted keys: LP-FT's {"ft": ..., "lp": ...} must give the ft stage's drift,
    the last stage that ran (order from the epochs list), not the alphabetically last key."""
    rec = make_record(strategy="lp_ft", drift={"lp": 0.0, "ft": 0.0259})
    rec["epochs"] = [{"stage": "lp", "epochs": 0, "converged": True}, {"stage": "ft", "epoch": 0},
                     {"stage": "ft", "epoch": 1}]
    write(tmp_path, rec)
    rec = make_record(strategy="gu_last_first", drift={"zeta": 0.01, "alpha": 0.0039, "mid": 0.02})
    rec["epochs"] = [{"stage": s, "epoch": 0} for s in ("zeta", "mid", "alpha")]  # ran zeta, mid, alpha
    write(tmp_path, rec)
    rec = make_record(strategy="ft", drift={"b": 0.5, "a": 0.7})  # two stages, no epochs: order unknown
    write(tmp_path, rec)
    runs = {r.strategy: r for r in load_inputs([tmp_path]).runs}
    assert runs["lp_ft"].stage_order == ["lp", "ft"] and runs["lp_ft"].drift == pytest.approx(0.0259)
    assert runs["gu_last_first"].drift == pytest.approx(0.0039)
    assert runs["ft"].drift is None
    [group] = aggregate(list(runs.values()))
    from medft_bench.leaderboard.tables import details_table

    table = details_table(group)
    col = table.headers.index("drift %")
    rows = {str(r[2]): r for r in table.rows}
    assert str(rows["LP-FT"][col]) == "2.59" and str(rows["GU last-to-first"][col]) == "0.39"
    assert str(rows["FT"][col]) == "—"


def test_frozen_reference_table_shows_an_unconverged_probe(tmp_path: Path) -> None:
    from medft_bench.leaderboard.tables import details_table, frozen_reference_table

    for seed, converged in enumerate((True, False, True)):
        rec = make_record(strategy="lp", seed=seed, primary=0.7)
        rec["epochs"] = [{"stage": "lp", "epochs": 0, "solver": "lbfgs", "converged": converged}]
        write(tmp_path, rec)
        write(tmp_path, make_record(strategy="knn", seed=seed, primary=0.72))
    [group] = aggregate(load_inputs([tmp_path]).runs)
    table = frozen_reference_table(group)
    [row] = table.rows
    cells = dict(zip(table.headers, row))
    assert str(cells["LP"]) == "70.00 ‡ 1/3" and cells["LP"].style == "warn"
    assert any("did not converge" in n for n in table.notes)
    lp_row = next(r for r in details_table(group).rows if str(r[2]) == "LP")
    assert "probe not converged 1/3" in str(lp_row[-1])


def test_recommendation_counts_a_failed_seed(tmp_path):
    """A cheap strategy equal to the best on its ok seeds, but with a failed seed, is not the best: the failed
    seed scores the chance score (AUC 0.5) on validation and test. So does an ok run no better than the majority
    class on the metric."""
    from medft_bench.leaderboard.recommend import recommend

    for seed in range(3):
        write(tmp_path, make_record(strategy="ft", seed=seed, primary=0.80 + 0.01 * seed, train_s=10.0))
        status = "failed" if seed == 2 else "ok"
        write(tmp_path, make_record(strategy="lp", seed=seed, primary=0.80 + 0.01 * seed, train_s=1.0,
                                    status=status, error="boom" if status == "failed" else None))
        write(tmp_path, make_record(strategy="knn", seed=seed, primary=0.80 + 0.01 * seed if seed else 0.45,
                                    train_s=0.5))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    (rec,) = recommend(group)
    assert rec.best.strategy == "ft"
    lp, knn = rec.standing("lp"), rec.standing("knn")
    assert lp.mean == pytest.approx((0.80 + 0.81 + 0.5) / 3) and lp.seeds == 3 and lp.failed == 1
    assert knn.mean == pytest.approx((0.5 + 0.81 + 0.82) / 3) and knn.failed == 1  # AUC 0.45: a failure
    row = next(r for r in group.rows if r.strategy == "knn")
    assert row.failed_seeds == [0] and row.summary.mean == pytest.approx((0.45 + 0.81 + 0.82) / 3)  # ok seeds


def test_real_tier_shape_is_not_testable_across_datasets_but_shows_within_case_evidence(tmp_path):
    """2 datasets x 1 backbone x 3 seeds (the real tier): nothing is testable at the dataset unit, and every
    verdict says so with its n; the seeds give within-case evidence, labelled as such."""
    for d in ("pathmnist", "dermamnist"):
        for seed in range(3):
            for s in sorted(STUDY):
                v = {"lp_ft": 0.85, "auto_rgn": 0.9}.get(s, 0.7) + 0.001 * seed
                write(tmp_path, make_record(dataset=d, strategy=s, seed=seed, primary=v))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    t = group.tests["lp_ft"]
    assert t["p"] is None and t["p_holm"] is None and t["note"].startswith("not testable: n = 2 datasets")
    assert sum(w["p"] is not None and w["p"] < 0.05 for w in t["within_case"]) == 2
    lpft, rgn, dense = group.claims
    assert lpft.verdict.startswith("not testable: n = 2 datasets") and lpft.n == 2
    assert "within-case (seeds as replicates of one case" in lpft.ours and "above FT in 2 of 2 cases" in lpft.ours
    assert rgn.verdict.startswith("not testable") and dense.verdict.startswith("not enough results: only one backbone")
    assert not any(c.supported for c in group.claims)


@pytest.mark.parametrize("width", [80, 100, 140])
def test_rich_terminal_tables_never_cut_a_number_or_a_header(grid, width: int) -> None:
    import io
    import re

    from rich.console import Console

    from medft_bench.leaderboard.page import leaderboard_page
    from medft_bench.leaderboard.render_rich import rich_tables, wrap_width

    root, _ = grid
    inputs = load_inputs([root])
    checked = 0
    for table in (t for s in leaderboard_page(aggregate(inputs.runs), inputs).sections for t in s.tables):
        buf = io.StringIO()
        console = Console(file=buf, width=width, color_system=None)
        for part in rich_tables(table, console):
            console.print(part)
        out = buf.getvalue()
        assert max(map(len, out.splitlines())) <= width, table.key
        for i, col in enumerate(table.columns):
            if wrap_width(table, i) is not None:
                continue  # free text wraps at word boundaries
            assert col.header in out, (table.key, col.header)
            for row in table.rows:
                for number in re.findall(r"[-+−]?\d[\d.,]*%?", row[i].text):
                    checked += 1
                    assert re.search(rf"(?<![\d.]){re.escape(number)}(?!\d)", out), (table.key, row[i].text)
    assert checked > 50


def test_real_groups_show_the_literature_and_the_files_they_ran_on(tmp_path: Path) -> None:
    from medft_bench.leaderboard.literature import literature_table, provenance_table

    for seed, (ft, auc) in enumerate(((0.70, 0.90), (0.74, 0.94))):
        rec = make_record(dataset="pneumoniamnist", strategy="ft", seed=seed, primary=ft)
        rec["metrics"]["test"].update(acc=ft + 0.1, auc=auc)
        rec["data"].update(md5="28209eda62fecd6e6a2d98b1501bb15f", md5_verified=True)
        rec["weights"].update(source="file", sha256="ab" * 32)
        write(tmp_path, rec)
    [group] = aggregate(load_inputs([tmp_path]).runs)
    rows = {str(r[1]): r for r in literature_table(group).rows}
    ours = rows["this suite: resnet50 FT (n=2)"]
    # ACC: the mean; AUC, the ranking metric: ± half its 95% interval (two seeds: t(0.975, 1) = 12.7)
    assert (str(ours[2]), str(ours[3])) == ("82.0", "92.0 ± 25.4")
    plus = rows["MedMNIST+ (pub.): DenseNet-121 E2E, 28→224 px padded"]
    assert (str(plus[2]), str(plus[3])) == ("83.5", "96.1") and plus[1].style == "muted"
    assert str(rows["MedMNIST v2 (pub.): ResNet-50 (224)"][3]) == "96.2"  # fractions shown as %
    [prov] = provenance_table(group).rows
    assert str(prov[2]) == "28209eda62fecd6e6a2d98b1501bb15f" and str(prov[5]) == "ab" * 32
    assert str(prov[3]) == "official"
    rec["data"]["md5_verified"] = False  # a copy that differs: a group of its own, flagged
    write(tmp_path / "u", rec)
    [ugroup] = aggregate(load_inputs([tmp_path / "u"]).runs)
    [prov] = provenance_table(ugroup).rows
    assert str(prov[3]) == "NOT the official file" and prov[3].style == "warn" and ugroup.key.unofficial
    synthetic = make_record(dataset="pneumoniamnist", synthetic=True, weights="random")
    write(tmp_path / "s", synthetic)
    [sgroup] = aggregate(load_inputs([tmp_path / "s"]).runs)
    assert literature_table(sgroup) is None and provenance_table(sgroup) is None


def test_heatmap_colours_are_not_set_by_one_outlier() -> None:
    from medft_bench.leaderboard.plots import colour_limit

    lim, clipped = colour_limit([1.0, -2.0, 3.0, 0.5, -1.5, 2.5, 1.0, -0.5, 2.0, 45.0])
    assert 3.0 <= lim < 10 and clipped  # the real differences span the scale; +45 pp is clipped, labelled
    assert colour_limit([1.0, -2.0]) == (2.0, False)  # a few cells: every one inside the scale
    assert colour_limit([]) == (0.5, False)


def test_pareto_draws_no_frontier_across_different_cases(tmp_path: Path) -> None:
    import matplotlib

    from medft_bench.leaderboard.plots import STYLE
    from medft_bench.leaderboard.plots import pareto_means_figure as pareto_figure

    # FT only on ResNet-50, LP only on VGG-19: their means are over different cases, so no frontier joins them.
    write(tmp_path, make_record(strategy="ft", backbone="resnet50", primary=0.8, train_s=50.0))
    write(tmp_path, make_record(strategy="lp", backbone="vgg19", primary=0.7, train_s=5.0))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    with matplotlib.rc_context(STYLE):
        (ax,) = pareto_figure(group).axes
        assert not ax.lines and "no frontier is drawn" in " ".join(pareto_figure(group)._suptitle.get_text().split())
    write(tmp_path, make_record(strategy="lp", backbone="resnet50", primary=0.7, train_s=5.0))
    write(tmp_path, make_record(strategy="ft", backbone="vgg19", primary=0.8, train_s=50.0))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    with matplotlib.rc_context(STYLE):
        (ax,) = pareto_figure(group).axes
        assert len(ax.lines) == 1  # both strategies on both cases: the frontier LP -> FT


def test_an_unofficial_medmnist_copy_is_grouped_apart_and_labelled(tmp_path: Path) -> None:
    from medft_bench.leaderboard.export import records_csv

    official = make_record(strategy="ft", primary=0.7, finished="2025-03-01T12:00:00+00:00")
    official["data"]["md5_verified"] = True
    copy = make_record(strategy="ft", primary=0.9, finished="2025-03-02T12:00:00+00:00", extra_hash="copy")
    copy["data"].update(md5_verified=False, md5="f" * 32)
    write(tmp_path, official)
    write(tmp_path, copy)
    inputs = load_inputs([tmp_path])
    assert not inputs.notes  # the later unofficial record supersedes nothing
    groups = aggregate(inputs.runs)
    assert [g.key.unofficial for g in groups] == [False, True]
    assert "UNOFFICIAL" in groups[1].key.label and "UNOFFICIAL" not in groups[0].key.label
    assert groups[0].key.slug != groups[1].key.slug and groups[1].rows[0].mean == pytest.approx(0.9)
    assert ",False," in records_csv([groups[1]]).splitlines()[1]  # official_file false in the CSV


def test_out_never_replaces_or_deletes_files_it_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    write(results, make_record(strategy="ft", seed=0, primary=0.8))
    project = tmp_path / "project"  # --out . in a project root: its README is not the leaderboard's
    project.mkdir()
    (project / "README.md").write_text("my project")
    assert main([str(results), "--out", str(project), "--quiet"]) == 1
    assert "README.md, which this leaderboard did not write" in capsys.readouterr().err
    assert sorted(p.name for p in project.iterdir()) == ["README.md"]  # nothing written, nothing lost
    assert (project / "README.md").read_text() == "my project"
    other = tmp_path / "other"  # someone else's summary.json listing their files
    other.mkdir()
    (other / "notes.md").write_text("keep")
    (other / "summary.json").write_text(json.dumps({"files": ["notes.md", "summary.json"]}))
    assert main([str(results), "--out", str(other), "--quiet"]) == 1
    assert (other / "notes.md").read_text() == "keep" and "files" in json.loads((other / "summary.json").read_text())
    board = tmp_path / "board"  # its own folder: written, then rewritten
    assert main([str(results), "--out", str(board), "--quiet"]) == 0
    assert main([str(results), "--out", str(board), "--quiet"]) == 0


# -- issue 27, item 10: one bad input never stops the leaderboard --------------------------------------------


def test_a_long_strategy_label_does_not_stop_the_heatmap(tmp_path: Path) -> None:
    """A 62-character label crashed the Δ heatmap ("left cannot be >= right") and nothing was written."""
    from medft_bench.leaderboard.plots import MAX_ROW_LABEL

    for dataset in ("pathmnist", "dermamnist"):
        write(tmp_path / "r", make_record(dataset=dataset, strategy="ft", primary=0.7))
        plugin = make_record(dataset=dataset, strategy="my_plugin", primary=0.8)
        plugin["strategy"]["label"] = "A plug-in strategy with a very long and descriptive name, v2.1"
        write(tmp_path / "r", plugin)
    assert main([str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "quick-28px-real-pretrained-delta.png").is_file()
    assert len(plugin["strategy"]["label"]) == 62 > MAX_ROW_LABEL
    assert "A plug-in strategy with a very long" in (tmp_path / "out" / "quick.md").read_text()  # tables: in full


def test_a_deeply_nested_json_file_is_one_problem_and_the_rest_is_published(tmp_path: Path, capsys) -> None:
    """A .json nested deeper than the recursion limit raised RecursionError in the leaderboard, compare and
    list tiers (list tiers: tests/engine/test_listing.py)."""
    results = tmp_path / "results"
    write(results, make_record(strategy="ft", primary=0.7))
    write(results, make_record(strategy="lp", primary=0.6))
    deep = results / "quick" / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    bench = tmp_path / "bench.json"
    bench.write_text("{" + '"a": {' * 100_000 + "}" * 100_001)

    inputs = load_inputs([results], benchmark_jsons=[bench])
    assert len(inputs.runs) == 2
    reasons = {Path(p.path).name: p.reason for p in inputs.problems}
    assert reasons["deep.json"] == "not a record (its JSON is nested too deeply to read)"
    assert reasons["bench.json"] == "benchmark file is not valid JSON (nested too deeply to read)"
    assert main([str(results), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [Path(p["path"]).name for p in summary["problems"]] == ["deep.json"]
    assert main(["compare", str(results), str(results), "--plain"]) == 0
    assert "2 matched" in capsys.readouterr().out


# -- issue 27, item 12: free text is neutralised in every output ----------------------------------------------

CLEAR = "\x1b[2J"  # clears the screen
LINK = "\x1b]8;;http://evil.example\x1b\\here\x1b]8;;\x1b\\"  # an OSC-8 link that hides its target


def _hostile(root: Path) -> None:
    """Records whose free text is hostile: a modality with ESC sequences, a label with HTML, a formula."""
    for dataset in ("pathmnist", "dermamnist"):
        ft = make_record(dataset=dataset, strategy="ft", primary=0.7)
        ft["data"]["modality"] = f"histology{CLEAR}{LINK}"
        write(root, ft)
        plugin = make_record(dataset=dataset, strategy="my_plugin", primary=0.8)
        plugin["strategy"]["label"] = '<img src=x onerror="alert(1)"><script>alert(2)</script>'
        write(root, plugin)
        formula = make_record(dataset=dataset, strategy="other", primary=0.65)  # Δ < 0: a number, unprefixed
        formula["strategy"]["label"] = '=HYPERLINK("http://evil.example","x")'
        write(root, formula)
    (root / "quick" / f"bad{CLEAR}.json").write_text("{not json")  # a file name: in the problems table


def test_control_characters_never_reach_the_terminal(tmp_path: Path, capsys) -> None:
    import io

    from rich.console import Console

    from medft_bench.leaderboard.render_rich import render_plain, render_rich

    _hostile(tmp_path / "r")
    inputs = load_inputs([tmp_path / "r"])
    groups = aggregate(inputs.runs)
    from medft_bench.leaderboard.metadata import run_metadata

    meta = run_metadata(inputs.runs)
    plain = render_plain(groups, inputs, meta, width=200)
    buf = io.StringIO()
    render_rich(groups, inputs, meta, console=Console(file=buf, force_terminal=True, width=200))
    for text in (plain, buf.getvalue()):
        assert CLEAR not in text and "\x1b]8" not in text and "\x1b\\" not in text
        assert "histology\\x1b[2J" in text.replace("\n", "") or "histology\\x1b[2J" in text
    assert "\x1b" not in plain  # plain text has no escape at all; rich's own colours are its only ones
    assert main([str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--plain", "--width", "300"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2J" in out  # (the problem's path wraps in its column)
    assert main(["compare", str(tmp_path / "r"), str(tmp_path / "r"), "--plain", "--all", "--width", "300"]) == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in out + err and "skipped" in err and "bad\\x1b[2J.json" in err


def test_markdown_pages_carry_no_raw_html_and_csv_no_formula(tmp_path: Path) -> None:
    import csv
    import io

    _hostile(tmp_path / "r")
    assert main([str(tmp_path / "r"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    for page in (tmp_path / "out").glob("*.md"):
        text = page.read_text()
        assert "<script" not in text and "<img" not in text and "\x1b" not in text, page.name
    quick = (tmp_path / "out" / "quick.md").read_text()
    assert "&lt;img src=x onerror=\"alert(1)\"&gt;&lt;script&gt;" in quick  # shown as text
    html = (tmp_path / "out" / "leaderboard.html").read_text()
    assert "<script>alert" not in html and "\x1b" not in html
    for name in ("records.csv", "aggregates.csv"):
        rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / name).read_text())))
        labels = {r["strategy_label"] for r in rows}
        assert "'=HYPERLINK(\"http://evil.example\",\"x\")" in labels, name
        assert not any(v.startswith(("=", "+", "@")) for r in rows for v in r.values()), name
        assert all("\x1b" not in v for r in rows for v in r.values())
        assert name == "records.csv" or any(r["delta_vs_ft"].startswith("-0.") for r in rows)


def test_text_helpers() -> None:
    from medft_bench.text import csv_value, markdown_text, printable

    assert printable("a\x1b[2Jb\x07c\x9bd\u202ee\nf\tg") == "a\\x1b[2Jb\\x07c\\x9bd\\u202ee\nf\tg"
    assert printable("caf\udce9.png") == "caf\\xe9.png"  # a Latin-1 byte of a file name
    assert markdown_text("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
    assert [csv_value(v) for v in ("=1+2", "+x", "-x", "@x", "\tx", "-0.5", "+3", "1e-3", "x=1", 0.5, None)] == \
        ["'=1+2", "'+x", "'-x", "'@x", "'\tx", "-0.5", "+3", "1e-3", "x=1", 0.5, None]


# -- issue 27, item 4: the --out folder changes as one unit ---------------------------------------------------


def _board(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """Records, a published leaderboard of them, one more record: (results, out, the folder's files)."""
    results, out = tmp_path / "results", tmp_path / "board"
    write(results, make_record(strategy="ft", primary=0.8))
    write(results, make_record(strategy="lp", primary=0.7))
    assert main([str(results), "--out", str(out), "--quiet"]) == 0
    write(results, make_record(strategy="lp_ft", primary=0.9))
    return results, out, _snapshot(out)


def _summary_records(out: Path) -> int:
    return json.loads((out / "summary.json").read_text())["metadata"]["records"]


def test_an_interrupted_leaderboard_leaves_the_folder_as_it_was(tmp_path: Path, monkeypatch, capsys) -> None:
    """Ctrl-C while writing left an index beside pages of another run, a .tmp behind, and a traceback."""
    from medft_bench.leaderboard import render_html

    results, out, before = _board(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render_html, "html_page", interrupted)  # after the plots and pages were staged
    assert main([str(results), "--out", str(out), "--quiet"]) == 130
    out_text, err = capsys.readouterr()
    assert err.strip().splitlines() == [err.strip()] and "interrupted" in err and "Traceback" not in err
    assert _snapshot(out) == before  # nothing changed, nothing left behind (staging, lock, .tmp)


def test_ctrl_c_during_the_renames_is_held_until_the_folder_is_whole(tmp_path: Path, monkeypatch, capsys) -> None:
    import os
    import signal

    results, out, before = _board(tmp_path)
    assert _summary_records(out) == 2
    real = os.replace
    calls = []

    def replace_then_ctrl_c(src, dst):
        if Path(dst).parent == out and not Path(dst).name.startswith("."):  # into place (not to a temporary)
            if not calls:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C at the first one
            calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    # Python's own Ctrl-C handler even when pytest was started with SIGINT ignored (a background job: `cmd &`),
    # where the process keeps an ignored signal ignored and the run would rightly not stop
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert main([str(results), "--out", str(out), "--quiet"]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    monkeypatch.setattr(os, "replace", real)
    assert "interrupted" in capsys.readouterr().err
    assert Path(calls[-1]).name == "summary.json" and len(calls) == len(before)  # every file renamed, the list last
    assert _summary_records(out) == 3 and sorted(p.name for p in out.iterdir()) == sorted(before)


_KILLED_AMONG_THE_RENAMES = """
import os, signal, sys
from pathlib import Path
from medft_bench.leaderboard.__main__ import main

results, out, kill_at = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
real, done = os.replace, []

def replace(src, dst):  # SIGKILL (no handler, nothing held) at one rename of a file into place
    dst = Path(dst)
    if dst.parent == out and not dst.name.startswith("."):
        if str(len(done)) == kill_at or dst.name == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        done.append(dst)
    real(src, dst)

os.replace = replace
main([results, "--out", str(out), "--quiet"])
"""


@pytest.mark.parametrize("kill_at", ["1", "summary.json"])
def test_a_leaderboard_killed_among_its_renames_is_finished_by_the_next_run(tmp_path: Path, kill_at: str) -> None:
    """Issue 43: SIGKILL between the commit's renames left a mix (README.md linking to a page not there, a new
    page the old summary.json does not list), and every later run refused the folder ("holds smoke.md, which this
    leaderboard did not write") until files were deleted by hand. The next run finishes the commit."""
    import os
    import signal

    results, out, before = _board(tmp_path)
    write(results, make_record(tier="smoke", strategy="ft", primary=0.6))  # a page the folder does not hold yet
    proc = subprocess.run([sys.executable, "-c", _KILLED_AMONG_THE_RENAMES, str(results), str(out), kill_at],
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {k: v for k, v in killed.items() if not k.startswith(".")} != before  # a mix of two leaderboards

    assert main([str(results), "--out", str(out), "--quiet"]) == 0
    listed = json.loads((out / "summary.json").read_text())["files"]
    assert sorted(p.name for p in out.iterdir()) == sorted(listed) and _summary_records(out) == 4  # whole, alone


def test_a_second_leaderboard_waits_for_the_first(tmp_path: Path) -> None:
    import threading
    import time

    from medft_bench.leaderboard.publish import _locked, publish

    results, out, before = _board(tmp_path)
    with _locked(out):  # another leaderboard is writing the folder
        worker = threading.Thread(target=publish, args=([results],), kwargs={"out": out})
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive() and _snapshot(out) == {**before, ".leaderboard.lock": b""}
    worker.join(60)
    assert not worker.is_alive() and _summary_records(out) == 3
    assert not (out / ".leaderboard.lock").exists()


def test_what_a_killed_leaderboard_left_is_removed(tmp_path: Path) -> None:
    results, out, _ = _board(tmp_path)
    (out / ".leaderboard-staging.99999").mkdir()
    (out / ".leaderboard-staging.99999" / "README.md").write_text("half")
    (out / ".README.md.99999.abcd.tmp").write_text("half")
    (out / ".notes.txt.tmp").write_text("not ours")
    assert main([str(results), "--out", str(out), "--quiet"]) == 0
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [".notes.txt.tmp"] and _summary_records(out) == 3


def test_metadata_warns_that_machines_change_metrics_not_only_costs() -> None:
    from medft_bench.leaderboard.load import Run
    from medft_bench.leaderboard.metadata import metadata_lines, run_metadata

    runs = []
    for seed, threads in ((0, 1), (1, 2)):
        rec = make_record(seed=seed)
        rec["environment"]["torch_threads"] = threads
        runs.append(Run(rec, f"r{seed}.json"))
    warnings = dict(metadata_lines(run_metadata(runs)))["warnings"]
    assert "more than one kind of machine" in warnings and "metrics too" in warnings
    assert "warnings" not in dict(metadata_lines(run_metadata(runs[:1])))


def test_the_answer_table_shows_the_answer_in_its_first_part_at_80_and_100_columns(tmp_path: Path) -> None:
    """At the real tier's widest cells (a 21-character backbone, "GU last-to-first") the answer's first part holds
    the case, the answer, the strategy and its test score at 80 columns, and its difference from the best at 100;
    every part repeats the case, the answer and the strategy, so that each still says whose numbers it holds."""
    import io

    from rich.console import Console

    from medft_bench.leaderboard.render_rich import rich_tables
    from medft_bench.leaderboard.tables.recommendations import recommendation_tables

    for dataset, base in (("pneumoniamnist", 0.80), ("breastmnist", 0.70)):
        for seed, noise in enumerate((0.0, 0.013, -0.009)):
            for strategy, gain in (("ft", 0.0), ("gu_last_first", 0.06), ("lp_ft", 0.08)):
                write(tmp_path, make_record(dataset=dataset, backbone="tf_efficientnet_lite0", strategy=strategy,
                                            seed=seed, primary=base + gain + noise * (gain > 0.07) + noise / 3,
                                            train_s=19.4 if strategy != "gu_last_first" else 4.8, rss_mb=1610.0,
                                            trainable=3_370_000))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    (table,) = recommendation_tables([group])
    longest = {c.header: max(len(str(r[i])) for r in table.rows) for i, c in enumerate(table.columns)}
    assert longest["case"] == 21 and longest["strategy"] == len("GU last-to-first"), longest
    for width, first in ((80, "test %"), (100, "vs best [95%]")):
        console = Console(file=io.StringIO(), width=width, color_system=None)
        parts = rich_tables(table, console)
        assert len(parts) <= 3
        for part in parts:
            console.print(part)
        out = console.file.getvalue()
        head = out.split("part 2 of")[0]
        assert first in head and "answer" in head and max(len(line) for line in out.splitlines()) <= width
        assert out.count("GU last-to-first") == 4 * len(parts), out  # 2 cases x (in set, cheapest) x every part


def test_a_method_that_did_not_complete_is_flagged_and_kept_out_of_the_answer(tmp_path: Path) -> None:
    from medft_bench.leaderboard.tables.results import details_table, results_table

    for seed in range(3):
        write(tmp_path, make_record(strategy="ft", seed=seed, primary=0.80 + 0.01 * seed))
        rec = make_record(strategy="gu_first_last", seed=seed, primary=0.90 + 0.01 * seed)
        rec["strategy"].update(complete=False, incomplete_reason="2 of 8 blocks unfrozen")
        write(tmp_path, rec)
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    (answer,) = group.analysis.recommendations
    assert answer.best.strategy == "ft" and answer.not_separable == ["ft"]  # the higher, incomplete GU is out
    assert answer.left_out == {"gu_first_last": "method incomplete: 2 of 8 blocks unfrozen"}
    results = [str(c) for row in results_table(group).rows for c in row]
    assert any(t.endswith("‡") and t.startswith("91.00") for t in results)
    flags = [str(row[-1]) for row in details_table(group).rows if str(row[2]) == "GU first-to-last"]
    assert flags and "‡ incomplete 3/3: 2 of 8 blocks unfrozen" in flags[0]
    from medft_bench.leaderboard.tables.recommendations import recommendation_table

    assert any("left out of the answer: GU first-to-last" in n for n in recommendation_table(group).notes)


def test_a_tuned_rate_at_its_grids_edge_in_most_seeds_is_named_under_the_answer(tmp_path: Path) -> None:
    from medft_bench.leaderboard.tables.recommendations import recommendation_table

    grid = [1e-4, 1e-3, 1e-2]
    chosen = {"ft": [1e-3, 1e-3, 1e-2], "lp_ft": [1e-2, 1e-2, 1e-3], "auto_rgn": [1e-4, 1e-4, 1e-4]}
    for strategy, lrs in chosen.items():
        for seed, lr in enumerate(lrs):
            rec = make_record(strategy=strategy, seed=seed, primary=0.80 + 0.01 * seed)
            rec["tuning"] = {"grid": grid, "chosen_lr": lr, "model": "kept", "trials": []}
            write(tmp_path, rec)
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    rows = {r.strategy: r.grid_edges for r in group.rows}
    assert rows == {"ft": {"of": 3, "highest": 1}, "lp_ft": {"of": 3, "highest": 2},
                    "auto_rgn": {"of": 3, "lowest": 3}}
    (note,) = [n for n in recommendation_table(group).notes if n.startswith("grid edge")]
    # FT's one edge seed of three is not "most seeds"; LP-FT's two and Auto-RGN's three are
    assert "LP-FT 2/3 at the highest" in note and "Auto-RGN 3/3 at the lowest" in note and " FT " not in note


def test_the_heatmaps_dark_cells_print_their_numbers_in_white(tmp_path: Path, monkeypatch) -> None:
    """Black numbers on the colour map's dark ends could not be read (issue 42, item 4)."""
    from medft_bench.leaderboard import plots

    for strategy, mean in (("ft", 0.80), ("lp", 0.70), ("lp_ft", 0.81), ("auto_rgn", 0.90)):
        write(tmp_path, make_record(strategy=strategy, primary=mean))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    assert plots.delta_heatmap(group, tmp_path / "delta.png")
    colours = {t.get_text(): t.get_color() for t in figures[0].axes[0].texts}
    assert colours == {"-10.0": "white", "+1.0": "black", "+10.0": "white"}


def test_a_huge_field_is_shortened_in_the_terminal_and_kept_whole_in_the_pages() -> None:
    """Issue 43: a 10 MB string in a record made the terminal table run for more than 10 minutes (tabulate's
    wrapping is quadratic: 400 KB took 25 s) after the pages were written in seconds."""
    import io

    from rich.console import Console

    from medft_bench.leaderboard.render_markdown import table_md
    from medft_bench.leaderboard.render_rich import plain_table, rich_captions, rich_tables
    from medft_bench.leaderboard.tables.model import Table, cell, left
    from medft_bench.text import DISPLAY_LIMIT

    huge = "word " * 80_000  # 400 KB
    table = Table("t", "Failures", [left("cell", key=True), left("error")], [[cell("c1"), cell(huge)]],
                  notes=[huge])
    text = plain_table(table, 100)
    console = Console(file=io.StringIO(), width=100)
    for part in [*rich_tables(table, console), *filter(None, rich_captions(table, 1))]:
        console.print(part)
    more = f"[{len(huge) - DISPLAY_LIMIT:,} more characters: the whole text is in the record and the pages]"
    assert more in " ".join(text.split()) and more in " ".join(console.file.getvalue().split())
    assert len(text) < 3 * DISPLAY_LIMIT + 2000
    assert huge in table_md(table)  # the page keeps the whole value


# ---------------------------------------------------------------------- issue 42, item 4: tables that read whole


def test_few_cases_and_many_strategies_turn_their_tables_strategies_as_rows(tmp_path: Path) -> None:
    from medft_bench.leaderboard.tables.results import delta_table, rank_table, results_table

    def group_of(datasets: tuple[str, ...], strategies: tuple[str, ...]):
        root = tmp_path / "-".join(datasets + strategies)
        for dataset in datasets:
            for i, s in enumerate(strategies):
                write(root, make_record(dataset=dataset, strategy=s, primary=0.6 + 0.05 * i))
        (group,) = aggregate(load_inputs([root]).runs)
        return group

    few_cases = group_of(("pathmnist", "dermamnist"), ("ft", "lp", "lp_ft"))
    for table in (results_table(few_cases), delta_table(few_cases), rank_table(few_cases)):
        assert table.headers[0] == "strategy" and table.columns[0].key, table.key
        assert all(h.startswith(("dermamnist · resnet50", "pathmnist · resnet50", "average rank"))
                   for h in table.headers[1:]), table.headers
    results = results_table(few_cases)
    assert [row[0].text for row in results.rows] == ["FT", "LP", "LP-FT"]
    assert [c.style for c in results.rows[2][1:]] == ["best", "best"]  # LP-FT, the best of each case
    many_cases = group_of(("pathmnist", "dermamnist", "bloodmnist"), ("ft", "lp"))
    assert results_table(many_cases).headers[:3] == ["dataset", "backbone", "metric"]  # cases as rows


def test_plain_text_never_breaks_a_word_and_fits_80_columns() -> None:
    """Model names, hashes and cell ids stay whole; a table that cannot fit side by side is shown a block per row;
    only a path longer than the whole width breaks, and then after a separator."""
    from medft_bench.leaderboard.render_rich import plain_table
    from medft_bench.leaderboard.tables.model import Table, cell, left

    sha = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
    path = "/work/pub/results-published/real/real-breastmnist-tf_efficientnet_lite0-gu_first_last-tuned-seed1.json"
    claim = "tf_efficientnet_lite0: +0.06 pp (mean of the 7 alternatives, n = 2 datasets; best: Auto-RGN)"
    claims = Table("claims", "claims", [left("claim", key=True), left("verdict"), left("verdict without failures")],
                   [[cell("DenseNet-121 benefits most from the alternatives to FT"), cell(claim), cell(claim)]])
    hashes = Table("provenance", "Data and weights", [left("dataset", key=True), left("backbone", key=True),
                                                      left("weights sha256"), left("file")],
                   [[cell("breastmnist"), cell("tf_efficientnet_lite0"), cell(sha), cell(path)]])
    for table in (claims, hashes):
        out = plain_table(table, 80)
        lines = out.splitlines()
        assert max(map(len, lines)) <= 80, max(lines, key=len)
        words = {w.strip(":·") for line in lines for w in line.split()}
        assert "tf_efficientnet_lite0" in words and "tf_efficientnet_lite" not in words
    out = plain_table(hashes, 80).splitlines()
    assert "breastmnist · tf_efficientnet_lite0" in out and "    " + sha in out  # the block of the row
    tail = out[out.index("  file:") + 1:]
    pieces = [line.strip() for line in tail if line.startswith("    ")]
    assert "".join(pieces) == path and len(pieces) == 2 and pieces[0][-1] in "/-_"
