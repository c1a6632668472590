
"""Target 1: frozen-backbone strategies from cached features.

LP over 10 epochs, trained on features taken once per image (in memory, or read from the on-disk cache),
against the same LP cell running the frozen backbone over every image in every epoch (the engine's
cached path switched off). Both sides are the same cell: data, seed, batch order, head, schedule; their
test metrics are reported side by side. The kNN probe is timed with cold and warm (disk) caches.

Each repeat uses a new seed (seed = repeat index, random weights), so accuracy differences between the two
sides can be set against the seed-to-seed spread.

    python benchmarks/perf/bench_feature_cache.py            # resnet18, synthetic pneumoniamnist, 28 px
    python benchmarks/perf/bench_feature_cache.py --train 4708 --val 524 --test 624   # official sizes
"""

from __future__ import annotations

import shutil
import statistics
import time
from typing import Any

import _common as C


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--train", type=int, default=2048)
    p.add_argument("--val", type=int, default=256)
    p.add_argument("--test", type=int, default=256)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=96)
    args = p.parse_args()
    cache_root = C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    from medft_bench.config import CellConfig, TrainSettings
    from medft_bench.data.sources import load_dataset
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell
    from medft_bench.training import engine, features

    splits = {"train": args.train, "val": args.val, "test": args.test}
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=256, patience=0)

    def cell(strategy: str, seed: int) -> CellConfig:
        return CellConfig(tier="perf", dataset=args.dataset, backbone=args.backbone, strategy=strategy, seed=seed,
                          img_size=args.img_size, weights="random", synthetic=True,
                          synthetic_splits=tuple(sorted(splits.items())), train=settings)

    load_dataset(args.dataset, args.img_size, synthetic_data=True, synthetic_splits=splits)  # write it untimed
    real_head_only = engine.Trainer._head_only

    def run(strategy: str, seed: int, mode: str, cached: bool = True) -> dict[str, Any]:
        import os

        os.environ[features.MODE_ENV] = mode
        engine.Trainer._head_only = real_head_only if cached else (lambda self, plan: False)
        try:
            t0 = time.perf_counter()
            rec = compute_cell(cell(strategy, seed), RunEnv(progress=False)).view
            wall = time.perf_counter() - t0
        finally:
            engine.Trainer._head_only = real_head_only
        assert rec.ok, rec.error
        c, test = rec.costs, rec.test
        return {"wall_s": wall, "train_s": c["train_s"], "eval_s": c["eval_s"],
                "feature_s": c["feature_extraction_s"], "cached_epochs": c["cached_feature_epochs"],
                "test_acc": test["acc"], "test_bal_acc": test["balanced_acc"], "test_auc": test["auc"],
                "extracted": ",".join(c["feature_cache"]["extracted"]) or "-",
                "loaded": ",".join(c["feature_cache"]["loaded"]) or "-"}

    def disk_cold(seed: int) -> dict[str, Any]:
        shutil.rmtree(cache_root / "features", ignore_errors=True)
        return run("lp", seed, "disk")

    sides = {
        "lp_backbone_every_epoch": lambda s: run("lp", s, "memory", cached=False),
        "lp_cached_memory": lambda s: run("lp", s, "memory"),
        "lp_cached_disk_cold": disk_cold,
        "lp_cached_disk_warm": lambda s: run("lp", s, "disk"),
        "knn_cold": lambda s: run("knn", s, "memory"),
        "knn_warm_disk": lambda s: run("knn", s, "disk"),
    }
    print(f"LP {args.epochs} epochs, {args.backbone} (random weights), synthetic {args.dataset} {args.img_size} px, "
          f"splits {splits}, load {C.load():.1f}")
    res = C.interleaved(sides, args.repeats)

    base = res["lp_backbone_every_epoch"]
    rows, summary = [], {}
    for name, runs in res.items():
        wall_ratio = C.median(C.ratios(base, runs, "wall_s"))
        train_ratio = C.median(C.ratios(base, runs, "train_s")) if runs[0]["train_s"] > 0 else None
        summary[name] = {"median_wall_s": C.median([r["wall_s"] for r in runs]),
                         "speedup_wall_vs_backbone_every_epoch": wall_ratio,
                         "speedup_train_vs_backbone_every_epoch": train_ratio,
                         "test_acc": [r["test_acc"] for r in runs], "test_auc": [r["test_auc"] for r in runs]}
        rows.append([name, summary[name]["median_wall_s"], C.median([r["train_s"] for r in runs]),
                     C.median([r["eval_s"] for r in runs]), wall_ratio, train_ratio if train_ratio else "-",
                     " ".join(f"{a:.3f}" for a in summary[name]["test_acc"]),
                     " ".join(f"{a:.3f}" for a in summary[name]["test_auc"])])
    print()
    print(C.table(rows, ["side", "wall s", "train s", "eval s", "speedup (wall)", "speedup (train)",
                         "test acc per seed", "test AUC per seed"]))
    d_acc = [a["test_acc"] - b["test_acc"] for a, b in zip(res["lp_cached_memory"], base)]
    d_auc = [a["test_auc"] - b["test_auc"] for a, b in zip(res["lp_cached_memory"], base)]
    spread = statistics.pstdev([r["test_acc"] for r in base]) if len(base) > 1 else float("nan")
    print(f"\ncached - uncached test acc per seed: {[round(d, 4) for d in d_acc]}; AUC: {[round(d, 4) for d in d_auc]};"
          f" seed-to-seed std of uncached acc: {spread:.4f}")
    target = summary["lp_cached_memory"]["speedup_wall_vs_backbone_every_epoch"]
    print(f"target: LP 10 epochs >= 10x faster than the backbone every epoch: cold cache {target:.2f}x "
          f"({C.verdict(target, 10)}), warm disk cache "
          f"{summary['lp_cached_disk_warm']['speedup_wall_vs_backbone_every_epoch']:.2f}x")
    path = C.write("feature_cache", {"args": vars(args), "splits": splits, "runs": res, "summary": summary,
                                     "accuracy_delta": {"acc": d_acc, "auc": d_auc, "uncached_acc_std": spread}},
                   args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
