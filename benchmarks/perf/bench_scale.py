
"""Target 6: how a cell's wall-clock grows with the training-set size.

One cell per training-set size (default 1k, 4k and 16k synthetic images at 64 px; validation and test
fixed at 256 each), on a small backbone so that it completes in minutes on a CPU: resnet18, LP for 10
epochs (features taken once, the head trained on them) by default, or ``--strategy ft --epochs 1``. The
sizes are interleaved (1k, 4k, 16k, 1k, ...) and the medians fitted with ``wall = a + b * n``: linear
growth shows as a high R^2, small residuals and a per-image cost ``b`` that does not rise with n.

    python benchmarks/perf/bench_scale.py                             # LP, resnet18, 1k/4k/16k at 64 px
    python benchmarks/perf/bench_scale.py --strategy ft --epochs 1 --sizes 1000,2000,4000
"""

from __future__ import annotations

import time
from typing import Any

import _common as C


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--strategy", default="lp")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--sizes", default="1000,4000,16000")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=96)
    p.set_defaults(repeats=2)
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    import numpy as np

    from medft_bench.config import CellConfig, TrainSettings
    from medft_bench.data.sources import load_dataset
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell

    sizes = [int(s) for s in args.sizes.split(",") if s]
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=256, patience=0)

    def splits(n: int) -> dict[str, int]:
        return {"train": n, "val": 256, "test": 256}

    for n in sizes:  # generate the data untimed (a one-off, cached on disk)
        load_dataset(args.dataset, args.img_size, synthetic_data=True, synthetic_splits=splits(n))

    def run(n: int, seed: int) -> dict[str, Any]:
        cfg = CellConfig(tier="perf", dataset=args.dataset, backbone=args.backbone, strategy=args.strategy,
                         seed=seed, img_size=args.img_size, weights="random", synthetic=True,
                         synthetic_splits=tuple(sorted(splits(n).items())), train=settings)
        t0 = time.perf_counter()
        rec = compute_cell(cfg, RunEnv(progress=False)).view
        wall = time.perf_counter() - t0
        assert rec.ok, rec.error
        c = rec.costs
        return {"n": n, "wall_s": wall, "train_s": c["train_s"], "eval_s": c["eval_s"],
                "ms_per_train_image": 1000 * wall / n}

    print(f"{args.strategy} {args.epochs} epochs, {args.backbone} (random init), synthetic {args.dataset} "
          f"{args.img_size} px, train sizes {sizes}, val/test 256, load {C.load():.1f}")
    run(sizes[0], 99)  # warm-up, not measured
    res = C.interleaved({str(n): (lambda r, n=n: run(n, 0)) for n in sizes}, args.repeats)
    med = {n: C.median([r["wall_s"] for r in res[str(n)]]) for n in sizes}
    x = np.array(sizes, dtype=float)
    y = np.array([med[n] for n in sizes])
    b, a = np.polyfit(x, y, 1)
    pred = a + b * x
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    rows = [[n, med[n], 1000 * med[n] / n, pred[i], (med[n] - pred[i]) / med[n]] for i, n in enumerate(sizes)]
    print()
    print(C.table(rows, ["train images", "wall s (median)", "ms per train image", "fit a + b n", "residual"]))
    growth = [med[sizes[i + 1]] / med[sizes[i]] for i in range(len(sizes) - 1)]
    print(f"\nfit: wall = {a:.2f} s + {1000 * b:.3f} ms x n, R^2 = {r2:.4f}; growth per step "
          f"{[round(g, 2) for g in growth]} for size steps {[sizes[i + 1] / sizes[i] for i in range(len(sizes) - 1)]}; "
          f"constant a is {a / med[sizes[-1]]:.1%} of the largest cell")
    fit = {"a_s": a, "b_s_per_image": b, "r2": r2}
    path = C.write("scale", {"args": vars(args), "runs": res, "median_wall_s": med, "fit": fit, "growth": growth},
                   args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
