
"""Target 5: what evaluation and early stopping cost, as a fraction of a cell's wall-clock.

Cells with the quick tier's settings (10 epochs, batch 96, eval batch 256, early stopping with patience 3,
28 px) on synthetic data with PneumoniaMNIST's official split proportions (train 4708, val 524, test 624,
scaled by ``--scale``). Evaluation is the per-epoch validation plus the final validation and test
(``costs.eval_s``); early stopping is keeping the best epoch's weights and restoring them
(``costs.early_stopping_s``). For LP, evaluation includes running the backbone once over the validation
and test images (their features): that part is the floor any evaluation must pay, and is shown apart.

    python benchmarks/perf/bench_eval_cost.py                         # resnet18, scale 0.25, ft and lp
    python benchmarks/perf/bench_eval_cost.py --backbone resnet50 --scale 1   # the quick tier's real shape
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import _common as C

OFFICIAL = {"train": 4708, "val": 524, "test": 624}  # medmnist.INFO["pneumoniamnist"]["n_samples"]


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--strategies", default="ft,lp")
    p.add_argument("--scale", type=float, default=0.25, help="fraction of the official split sizes")
    p.add_argument("--epochs", type=int, default=None, help="default: the quick tier's")
    p.set_defaults(repeats=2)
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    from medft_bench.config import CellConfig
    from medft_bench.data.sources import load_dataset
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell
    from medft_bench.tiers import get_tier

    splits = {k: max(16, round(v * args.scale)) for k, v in OFFICIAL.items()}
    settings = get_tier("quick").train
    if args.epochs:
        settings = replace(settings, epochs=args.epochs)
    load_dataset(args.dataset, 28, synthetic_data=True, synthetic_splits=splits)

    def run(strategy: str, seed: int) -> dict[str, Any]:
        cfg = CellConfig(tier="perf", dataset=args.dataset, backbone=args.backbone, strategy=strategy, seed=seed,
                         img_size=28, weights="random", synthetic=True, synthetic_splits=tuple(sorted(splits.items())),
                         train=settings)
        t0 = time.perf_counter()
        rec = compute_cell(cfg, RunEnv(progress=False)).view
        wall = time.perf_counter() - t0
        assert rec.ok, rec.error
        c = rec.costs
        fc = (c.get("feature_cache") or {}).get("seconds", {})
        eval_features = fc.get("val", 0.0) + fc.get("test", 0.0)
        return {"wall_s": wall, "train_s": c["train_s"], "eval_s": c["eval_s"],
                "early_stopping_s": c["early_stopping_s"], "epochs_run": c["epochs_run"],
                "eval_feature_s": eval_features,
                "eval_frac": c["eval_s"] / wall, "es_frac": c["early_stopping_s"] / wall,
                "eval_es_frac": (c["eval_s"] + c["early_stopping_s"]) / wall,
                "eval_beyond_features_frac": (c["eval_s"] - eval_features + c["early_stopping_s"]) / wall}

    strategies = [s for s in args.strategies.split(",") if s]
    print(f"quick-tier settings ({settings.epochs} epochs, batch {settings.batch_size}, patience {settings.patience}), "
          f"{args.backbone} (random init), synthetic {args.dataset} 28 px, splits {splits}, load {C.load():.1f}")
    run(strategies[0], 99)  # warm-up, not measured
    res = C.interleaved({s: (lambda r, s=s: run(s, r)) for s in strategies}, args.repeats)
    rows, summary = [], {}
    for s, runs in res.items():
        m = {k: C.median([r[k] for r in runs]) for k in runs[0] if isinstance(runs[0][k], (int, float))}
        summary[s] = m
        rows.append([s, m["wall_s"], m["eval_s"], m["early_stopping_s"], m["epochs_run"], m["eval_frac"],
                     m["es_frac"], m["eval_es_frac"], m["eval_beyond_features_frac"], C.verdict(m["eval_es_frac"], 0.10,
                                                                                            higher_is_better=False)])
    print()
    print(C.table(rows, ["strategy", "wall s", "eval s", "early stop s", "epochs", "eval / wall", "early stop / wall",
                         "(eval + early stop) / wall", "same, beyond val/test features", "target < 10%"]))
    path = C.write("eval_cost", {"args": vars(args), "splits": splits, "settings": settings.__dict__, "runs": res,
                                 "summary": summary}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
