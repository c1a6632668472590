
"""What each strategy costs per training image against FT, on a real cell (the real tier's BreastMNIST cell:
the bundled official file, EfficientNet-Lite0 with its packaged ImageNet weights, 48 px, 512 images, 3 epochs).

Every strategy's cell runs once per repeat, interleaved with the others in a new order each repeat, in this one
process; every cell trains on the same images for the same epoch budget, so the ratio of training seconds is the
ratio of cost per training image: FT's ``costs.train_s`` / the strategy's, per repeat against that repeat's FT,
median reported (above 1: cheaper than FT). ``train_s`` holds the epochs, the gradient probes, the fits and the
feature extraction; the probes', fits' and features' shares are shown beside it, so that a strategy slower than
FT says where its time went.

    python benchmarks/perf/bench_strategy_cost.py                      # 3 repeats, the study's eight
    python benchmarks/perf/bench_strategy_cost.py --strategies ft,lp_ft --repeats 5
"""

from __future__ import annotations

import random
from typing import Any

import _common as C

STUDY = "ft,lp,gu_last_first,gu_first_last,lp_ft,l1_sp,l2_sp,auto_rgn"


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="breastmnist")
    p.add_argument("--strategies", default=STUDY)
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell
    from medft_bench.tiers import get_tier

    tier = get_tier("real")
    strategies = args.strategies.split(",")
    if "ft" not in strategies:
        strategies.insert(0, "ft")

    def run(strategy: str, seed: int) -> dict[str, Any]:
        cfg = tier.cell(args.dataset, tier.img_sizes[0], tier.backbones[0], strategy, seed)
        rec = compute_cell(cfg, RunEnv(progress=False)).view
        assert rec.ok, rec.error
        c = rec.costs
        return {"train_s": c["train_s"], "probe_s": c["probe_s"], "fit_s": c["fit_s"],
                "feature_s": c.get("feature_extraction_s", 0.0), "epochs_run": c["epochs_run"]}

    order = random.Random(0)
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
    for r in range(args.repeats):
        todo = strategies[:]
        order.shuffle(todo)
        for s in todo:
            res = run(s, r)
            results[s].append(res)
            print(f"  [{r + 1}/{args.repeats}] {s}: train_s={res['train_s']:.2f} probe_s={res['probe_s']:.2f} "
                  f"fit_s={res['fit_s']:.2f}", flush=True)
    ft = results["ft"]
    rows = []
    for s in strategies:
        ratio = C.median([f["train_s"] / x["train_s"] for f, x in zip(ft, results[s])])
        med = {k: C.median([x[k] for x in results[s]]) for k in ("train_s", "probe_s", "fit_s", "feature_s")}
        rows.append([s, med["train_s"], ratio, med["probe_s"], med["fit_s"], med["feature_s"]])
    print(C.table(rows, ["strategy", "train s", "FT train s / its", "probe s", "fit s", "features s"]))
    path = C.write("strategy_cost", {"dataset": args.dataset, "repeats": args.repeats, "results": results,
                                     "rows": rows})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
