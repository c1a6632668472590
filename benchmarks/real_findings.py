"""The figures docs/strategies.md ("Reading the real tier") cites, read from real-tier records, each with the
record field it comes from.

    python benchmarks/real_findings.py results-published/

Per group (tier, protocol) and dataset, per strategy over its seeds: test AUC (``metrics.test.auc``) and
balanced accuracy (``metrics.test.balanced_acc``) mean ± sd; seeds at the majority class on balanced accuracy;
``strategy.complete``; the backbone's drift (``drift``, ‖θ − θ₀‖/‖θ₀‖ after the kept checkpoint); how often the
kept checkpoint is the last epoch (``costs.best_epoch`` against ``costs.epochs_run``); the learning rates the
tuned protocol chose (``tuning.chosen_lr``) and how often at the grid's edge (``tuning.grid``); the training
subsets the seeds drew (``data.train_subset.indices_sha256``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from medft_bench.leaderboard.load import Run, load_inputs


def _ms(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values) * 100:5.1f} ± {sd * 100:4.1f}"


def describe(runs: list[Run]) -> list[str]:
    ok = [r for r in runs if r.ok and r.metrics]
    auc = [float(r.test["auc"]) for r in ok]
    bal = [float(r.test["balanced_acc"]) for r in ok]
    at_majority = sum(1 for r in ok if r.weak_result)
    last = sum(1 for r in ok if r.best_epoch is not None and r.best_epoch == r.costs.get("epochs_run", 0) - 1)
    drifts = [r.drift for r in ok if r.drift is not None]
    lrs = [r.chosen_lr for r in ok if r.chosen_lr is not None]
    edges = sum(1 for r in ok if r.chosen_lr is not None and r.tuning
                and r.chosen_lr in (min(r.tuning["grid"]), max(r.tuning["grid"])))
    subsets = {(r.data.get("train_subset") or {}).get("indices_sha256") for r in ok}
    parts = [f"n={len(ok)}", f"AUC {_ms(auc)}", f"bal.acc {_ms(bal)}",
             f"majority-class {at_majority}/{len(ok)}",
             f"complete {sum(r.method_complete for r in ok)}/{len(ok)}",
             f"last epoch kept {last}/{len(ok)}",
             f"drift {statistics.fmean(drifts) * 100:.2f}%" if drifts else "drift —",
             f"subsets {len(subsets)}"]
    if lrs:
        counts = defaultdict(int)
        for lr in lrs:
            counts[lr] += 1
        parts.append("chosen lr " + ", ".join(f"{lr:g}×{n}" for lr, n in sorted(counts.items()))
                     + f" (grid edge {edges}/{len(lrs)})")
    return parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path)
    args = p.parse_args(argv)
    runs = [r for r in load_inputs(args.results).runs if not r.synthetic]
    if not runs:
        print("no records of real data", file=sys.stderr)
        return 2
    groups: dict[tuple[str, str, str], dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        groups[(r.tier, r.protocol, r.dataset)][r.strategy].append(r)
    for (tier, protocol, dataset), by_strategy in sorted(groups.items()):
        print(f"\n{tier} / {protocol} / {dataset}")
        for strategy, rs in sorted(by_strategy.items()):
            print(f"  {strategy:14s} " + "; ".join(describe(rs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
