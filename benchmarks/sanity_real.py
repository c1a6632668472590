
"""Does real transfer still work? The real tier's FT, LP and kNN on the bundled official files, checked against
controls and the literature; exits 1 when a check fails (CI runs it on BreastMNIST, seed 0).

    python benchmarks/sanity_real.py                                   # every dataset and seed of the real tier
    python benchmarks/sanity_real.py --datasets breastmnist --seeds 0  # CI's part

The cells are the real tier's (reused from --results-dir when the main job has run them), plus FT and LP with
random weights (the same cells with ``weights="random"``, calibrated as random weights are). Checks, per dataset
on the mean over the seeds given:

- pretrained LP beats its random-weights cell by at least MARGIN_PP (test balanced accuracy): frozen features
  are where ImageNet weights are all that matters, and a broken weight mapping or preprocessing shows here first;
- pretrained FT is not below its random-weights cell by more than BAND in test AUC. Not a margin: the published
  numbers show no FT gain from ImageNet weights on these two datasets at 28 px (PneumoniaMNIST ACC/AUC
  85.4/.944 from scratch, MedMNIST v2 ResNet-18, against 83.6/.961 pretrained, MedMNIST+ DenseNet-121 E2E;
  BreastMNIST 86.3/.901 against 83.3/.862), so a margin on FT is not a property of correct code. The FT
  difference in balanced accuracy is printed beside it as information;
- LP is within KNN_GAP_PP of kNN on the same frozen features (a probe far below kNN has not converged);
- FT's test AUC reaches the published sanity band: MedMNIST+'s pretrained DenseNet-121 E2E at 28 px, ± BAND
  (the band a published reproduction of MedMNIST v2 uses for these datasets), judged with the seeds'
  uncertainty: the check holds when the 95% t interval of FT's mean AUC over the seeds (the mean itself with
  one seed) reaches the band. A mean just outside the band whose interval reaches it is not evidence that
  transfer is broken: PneumoniaMNIST's train-mode FT at 0.9105 against a band from 0.911 (standard error 0.02)
  was a finding about train-mode BatchNorm (FT with frozen statistics reached 0.965), not a failure of
  transfer. MedMNIST+ trains up to 100 epochs at 224 px; the band is wide enough for the real tier's budget
  only while transfer works.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

MARGIN_PP = 5.0
KNN_GAP_PP = 5.0
BAND = 0.05
REFERENCE = ("medmnist_plus_densenet121", "E2E", "auc_28")  # source id, scheme, column (percent)


def seed_interval(values: list[float]) -> tuple[float, float]:
    """The 95% Student t interval of the mean of ``values`` (the mean itself for one value)."""
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean
    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


def published_auc(dataset: str) -> float | None:
    from medft_bench.leaderboard.references import sources

    source, scheme, column = REFERENCE
    for src in sources({dataset}):
        if src["id"] == source:
            row = next((r for r in src["rows"] if r.get("scheme") == scheme), None)
            return None if row is None else row[column] / 100.0
    return None


def main(argv: list[str] | None = None) -> int:
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import run_or_reuse
    from medft_bench.tiers import get_tier

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results-dir", default="results", type=Path)
    ap.add_argument("--datasets", default=None, help="comma-separated (default: the real tier's)")
    ap.add_argument("--seeds", default=None, help="comma-separated (default: the real tier's)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--progress", default="off", choices=("auto", "rich", "plain", "off"))
    args = ap.parse_args(argv)
    tier = get_tier("real")
    datasets = args.datasets.split(",") if args.datasets else list(tier.datasets)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else list(tier.seeds)
    backbone, size = tier.backbones[0], tier.img_sizes[0]

    def test_metrics(dataset: str, strategy: str, weights: str) -> dict[str, Any]:
        """The mean over the seeds of each test metric of the cell (run, or reused from --results-dir), and the
        per-seed AUCs ("auc_seeds")."""
        values = []
        for seed in seeds:
            cell = tier.cell(dataset, size, backbone, strategy, seed)
            if weights != cell.weights:
                cell = replace(cell, weights=weights)
            out = run_or_reuse(cell, RunEnv.at(args.results_dir, data_root=args.data_root, progress=args.progress))
            rec = out.view
            if not rec.ok:
                raise SystemExit(f"{cell.cell_id} ({weights}): {rec.status}: {rec.error}")
            test = rec.test
            print(f"  {'reused' if out.reused else 'ran':6s} {cell.cell_id} ({weights}): test balanced_acc "
                  f"{test['balanced_acc']:.4f}, auc {test['auc']:.4f}", flush=True)
            values.append(test)
        means: dict[str, Any] = {k: statistics.fmean(float(v[k]) for v in values) for k in ("balanced_acc", "auc")}
        return {**means, "auc_seeds": [float(v["auc"]) for v in values]}

    rows, failed = [], 0
    for dataset in datasets:
        print(f"{dataset} (seeds {', '.join(map(str, seeds))}):", flush=True)
        means = {(s, w): test_metrics(dataset, s, w) for s, w in (
            ("ft", tier.weights), ("lp", tier.weights), ("knn", tier.weights), ("ft", "random"), ("lp", "random"))}
        bacc = {key: m["balanced_acc"] * 100 for key, m in means.items()}
        auc = means["ft", tier.weights]["auc"]
        ref = published_auc(dataset)
        ft_auc_gain = auc - means["ft", "random"]["auc"]
        checks = [
            (f"FT pretrained − random AUC >= −{BAND}", ft_auc_gain, lambda v: v >= -BAND, "Δauc"),
            ("FT pretrained − random (information)", bacc["ft", tier.weights] - bacc["ft", "random"], None, "pp"),
            (f"LP pretrained − random >= {MARGIN_PP:.0f} pp", bacc["lp", tier.weights] - bacc["lp", "random"],
             lambda v: v >= MARGIN_PP, "pp"),
            (f"LP − kNN >= −{KNN_GAP_PP:.0f} pp", bacc["lp", tier.weights] - bacc["knn", tier.weights],
             lambda v: v >= -KNN_GAP_PP, "pp"),
        ]
        if ref is not None:
            lo, hi = seed_interval(means["ft", tier.weights]["auc_seeds"])
            checks.append((f"FT test AUC (95% over seeds) reaches MedMNIST+ {ref:.3f} ± {BAND}", (auc, lo, hi),
                           lambda v, r=ref: v[2] >= r - BAND and v[1] <= r + BAND, "auc"))
        for name, value, ok, unit in checks:
            shown = ({"pp": f"{value:+.2f} pp", "Δauc": f"{value:+.4f}"}.get(unit, "") if unit != "auc"
                     else f"{value[0]:.4f} [{value[1]:.4f}, {value[2]:.4f}]")
            if ok is None:
                rows.append((dataset, name, shown, "-"))
                continue
            passed = bool(ok(value))
            failed += not passed
            rows.append((dataset, name, shown, "pass" if passed else "FAIL"))
    width = max(len(r[1]) for r in rows)
    print()
    for dataset, name, shown, verdict in rows:
        print(f"{dataset:15s} {name:{width}s} {shown:>25s}  {verdict}")
    checked = sum(r[3] != "-" for r in rows)
    print(f"\nsanity checks: {checked - failed} of {checked} held")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
