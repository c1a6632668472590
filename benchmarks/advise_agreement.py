"""How often ``advise`` picks what the full grid would, and at what share of its compute (docs/advise.md).

    python benchmarks/advise_agreement.py results-published --work /tmp/advise-work [--budget F] [--out table.md]

For each real dataset available offline (the two bundled files) and each packaged backbone whose weights are
installed and whose full grid is in GRID (tier real, tuned protocol): the grid's records are copied (GRID is only
read) into WORK, ``python -m medft_bench advise`` runs there on the same options as the grid (so it reuses the grid's
cells it races on, charged at their recorded cost, and computes only its screens), and its answer is set against
the leaderboard's answer of the grid (``python -m medft_bench.leaderboard GRID``: the not-separable set, each
strategy's test mean). Reported per case: advise's answer, whether its first pick is inside the grid's set, its
regret (the grid's best test mean minus the pick's, in points of the ranking metric), and its training seconds as a
share of the grid's recorded ones; the screens are also charged at the grid's rate (a third of the default-rate
trial's seconds in the grid's seed-0 cell), since the grid's cells ran two at a time on a busy CPU.

advise uses no prior from other datasets, so no leave-one-dataset-out is needed. A grid cell missing from GRID
stops the benchmark (advise would compute it: this script never recomputes the grid).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

GRID_STRATEGIES = "ft,lp,gu_last_first,gu_first_last,lp_ft,l1_sp,l2_sp,auto_rgn,auto_snr,ft_eval,knn"
DATASETS = ("pneumoniamnist", "breastmnist")
BACKBONES = ("tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2")


def _installed(backbone: str, weights: str) -> bool:
    """Whether ``backbone``'s packaged weights are installed (other weights: assumed present)."""
    from medft_bench.models.packaged import PACKAGED

    if weights != "packaged" or backbone not in PACKAGED:
        return True
    return importlib.util.find_spec(PACKAGED[backbone].module) is not None


def _advise_argv(args: argparse.Namespace, dataset: str, backbone: str) -> list[str]:
    """advise's command line for one case: the grid's options (only those given: a tier's defaults stay)."""
    argv = ["advise", "--tier", args.tier, "--datasets", dataset, "--backbones", backbone, "--weights", args.weights,
            "--strategies", args.strategies, "--seeds", args.seeds, "--protocol", "tuned", "--results-dir",
            str(args.work), "--progress", "off"]
    for name in ("data_root", "lr_grid", "epochs", "max_train_samples"):
        if getattr(args, name) is not None:
            argv += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return argv


def _grid_cells(argv: list[str]) -> list[Any]:
    from medft_bench.__main__ import _parser
    from medft_bench.options import build_cells

    args = _parser().parse_args(argv)
    return build_cells(args)[1]


def copy_grid(grid: Path, work: Path, cells: list[Any], data_root: str | None) -> dict[tuple[str, int], dict[str, Any]]:
    """Copy each of ``cells``' records (with its head and predictions) from ``grid`` into ``work``; the records by
    (strategy, seed). Stops when one is missing."""
    from medft_bench.results.store import ResultStore
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import resolved

    src, dst = ResultStore(grid), ResultStore(work)
    env = RunEnv.at(work, data_root=data_root)  # the data's identity is part of each cell's hash
    out = {}
    for cfg in cells:
        cfg = resolved(cfg, env)
        record = src.lookup(cfg)
        path = src.path_for(cfg)
        if record is None or path is None:
            sys.exit(f"the grid has no record of {cfg.cell_id} ({cfg.config_hash}) in {grid}: advise would compute "
                     "it; run the grid first (scripts/publish_real.sh)")
        target = dst.path_for(cfg)
        assert target is not None
        target.parent.mkdir(parents=True, exist_ok=True)
        for file in path.parent.glob(path.stem + "*"):
            if file.name.endswith(".trials"):
                continue  # a cell reused whole never reads its trials
            to = target.parent / file.name
            if not to.exists():
                (shutil.copytree if file.is_dir() else shutil.copy2)(file, to)
        out[(cfg.strategy, cfg.seed)] = record
    return out


def grid_answers(grid: Path, tier: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The leaderboard's answer of the grid's tuned group of ``tier``, by (dataset, backbone)."""
    from medft_bench.leaderboard.__main__ import main as leaderboard

    with tempfile.TemporaryDirectory() as out:
        if leaderboard([str(grid), "--out", out, "--quiet"]) != 0:
            sys.exit(f"the leaderboard of {grid} failed")
        summary = json.loads((Path(out) / "summary.json").read_text())
    answers = {}
    for group in summary["groups"]:
        if group["tier"] != tier or group["protocol"] != "tuned" or group["synthetic"]:
            continue
        for rec in group["recommendations"]:
            if len(rec["datasets"]) == 1:
                answers[(rec["datasets"][0], rec["backbone"])] = rec
    return answers


def _default_rate_trial_s(record: dict[str, Any], default_lr: float) -> float | None:
    trials = (record.get("tuning") or {}).get("trials") or []
    hit = [t for t in trials if abs(t["lr"] - default_lr) <= 1e-12 * default_lr]
    return float(hit[0]["train_s"]) if hit else None


def measure(args: argparse.Namespace, dataset: str, backbone: str, answer: dict[str, Any]) -> dict[str, Any]:
    from medft_bench.__main__ import main
    from medft_bench.advise import SCREEN, SCREEN_EPOCHS

    argv = _advise_argv(args, dataset, backbone)
    cells = _grid_cells(argv)
    records = copy_grid(args.grid, args.work, cells, args.data_root)
    out_json = args.work / f"advise-{dataset}-{backbone}.json"
    budget = [] if args.budget is None else ["--budget", str(args.budget)]
    if main([*argv, "--json", str(out_json), *budget]) != 0:
        sys.exit(f"advise failed on {dataset} x {backbone}")
    got = json.loads(out_json.read_text())
    grid_s = sum(float(r["costs"]["train_s"]) for r in records.values())
    standings = {s["strategy"]: s for s in answer["standings"]}
    best = max(standings.values(), key=lambda s: s["mean"])
    pick = got["recommended"][0]
    first_seed = int(args.seeds.split(",")[0])
    # the screens at the grid's rate: the default-rate trial's seconds in the grid's seed-0 cell, per epoch
    at_grid_rate = got["spent_s"]
    for run in got["runs"]:
        if run["rung"] != SCREEN:
            continue
        cfg = next(c for c in cells if c.strategy == run["strategy"] and c.seed == first_seed)
        trial_s = _default_rate_trial_s(records[(run["strategy"], first_seed)], cfg.train.lr)
        if trial_s is not None:
            at_grid_rate += trial_s * SCREEN_EPOCHS / cfg.train.epochs - run["cost_s"]
    computed_full = [r for r in got["runs"] if r["rung"] != SCREEN and not r["reused"]]
    return {
        "dataset": dataset, "backbone": backbone, "recommended": got["recommended"], "pick": pick,
        "separated": got["separated"], "grid_set": answer["not_separable"], "grid_pick": answer["best"],
        "grid_best_by_test": best["strategy"], "in_set": pick in answer["not_separable"],
        "regret_pp": 100 * (best["mean"] - standings[pick]["mean"]) if pick in standings else float("nan"),
        "spent_s": got["spent_s"], "spent_at_grid_rate_s": at_grid_rate, "grid_s": grid_s,
        "advise_grid_estimate_s": got["grid_estimate_s"], "share": got["spent_s"] / grid_s,
        "share_at_grid_rate": at_grid_rate / grid_s, "grid_cells_computed": len(computed_full),
        "finalists": list(got["finalists"]),
    }


def table(rows: list[dict[str, Any]]) -> str:
    from medft_bench.advise import strategy_label

    def names(xs: list[str]) -> str:
        return ", ".join(strategy_label(x) for x in xs)

    lines = ["| dataset | backbone | grid's set (best on validation first) | grid's best on test | advise's answer "
             "(first pick first) | first pick in grid's set | regret (pp AUC) | spent / grid (screens at the grid's "
             "rate) | advise's grid estimate / grid |",
             "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        cannot = "" if r["separated"] or len(r["recommended"]) == 1 else " (cannot tell: the cheapest)"
        lines.append(
            f"| {r['dataset']} | {r['backbone']} | {names(r['grid_set'])} | {strategy_label(r['grid_best_by_test'])} | "
            f"{names(r['recommended'])}{cannot} | {'yes' if r['in_set'] else 'no'} | {r['regret_pp']:.1f} | "
            f"{100 * r['share']:.0f} % ({100 * r['share_at_grid_rate']:.0f} %) | "
            f"{r['advise_grid_estimate_s'] / r['grid_s']:.2f} |")
    inside = sum(r["in_set"] for r in rows)
    lines.append("")
    lines.append(f"First pick inside the grid's not-separable set: {inside} of {len(rows)}; largest regret "
                 f"{max(r['regret_pp'] for r in rows):.1f} pp; largest share of the grid's training time "
                 f"{100 * max(r['share'] for r in rows):.0f} % ({100 * max(r['share_at_grid_rate'] for r in rows):.0f} "
                 "% with the screens at the grid's rate).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("grid", type=Path, help="results folder holding the full grid (only read), e.g. results-published")
    p.add_argument("--work", type=Path, required=True, help="scratch results folder: the grid's records are "
                   "copied here and advise writes its screens here")
    p.add_argument("--budget", type=float, default=None, help="advise's --budget (default: its own)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="the grid's seeds (default 0-4, the published run's)")
    p.add_argument("--strategies", default=GRID_STRATEGIES, help="the grid's strategies (the published run's)")
    p.add_argument("--out", type=Path, help="also write the table (Markdown) and the rows (JSON beside it)")
    # the grid's settings, when it is not the published one (a small grid to check this script)
    p.add_argument("--tier", default="real")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--weights", default="packaged")
    p.add_argument("--data-root")
    p.add_argument("--lr-grid")
    p.add_argument("--epochs", type=int)
    p.add_argument("--max-train-samples", type=int)
    args = p.parse_args(argv)
    answers = grid_answers(args.grid, args.tier)
    rows = []
    for backbone in args.backbones.split(","):
        if not _installed(backbone, args.weights):
            print(f"{backbone}: its packaged weights are not installed (the weights extra): not measured")
            continue
        for dataset in args.datasets.split(","):
            if (dataset, backbone) not in answers:
                print(f"{dataset} x {backbone}: no full grid in {args.grid}: not measured")
                continue
            rows.append(measure(args, dataset, backbone, answers[(dataset, backbone)]))
    if not rows:
        print("no case measured")
        return 1
    text = table(rows)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
