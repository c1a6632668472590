"""The answer under a null built from real records: strategy names shuffled within each case and seed.

Within every (dataset, backbone, seed) of a group, the strategy names of the records are permuted: each
strategy's seeds become a random draw of the case's networks, so every strategy is the same in expectation, with
the real records' own noise (training seeds, test and validation images, failures). The leaderboard's answer is
then computed in memory for each shuffle; a sound answer names a one-strategy ``not_separable`` set rarely and
excludes any strategy at about its nominal rate (0.05) or less.

    python benchmarks/null_shuffle.py leaderboard-records/ --shuffles 20

Prints, per group, the share of shuffled answers whose set is one strategy and the share that exclude any
strategy, next to the unshuffled answer.
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
from collections import defaultdict
from pathlib import Path

from medft_bench.leaderboard.aggregate import aggregate
from medft_bench.leaderboard.group_key import group_key
from medft_bench.leaderboard.load import Run, load_inputs


def shuffled(runs: list[Run], rng: random.Random) -> list[Run]:
    """``runs`` with the strategy names (and labels) permuted within each (group, dataset, backbone, seed)."""
    cells: dict[tuple, list[Run]] = defaultdict(list)
    for run in runs:
        cells[(group_key(run), run.dataset, run.backbone, run.seed)].append(run)
    out = []
    for members in cells.values():
        names = [(r.record["cell"]["strategy"], dict(r.record["strategy"])) for r in members]
        rng.shuffle(names)
        for run, (name, strategy) in zip(members, names):
            record = copy.copy(run.record)
            record["cell"] = {**run.record["cell"], "strategy": name}
            record["strategy"] = {**run.record["strategy"], "name": strategy["name"], "label": strategy.get("label")}
            out.append(Run(record, run.path))
    return out


def answers(runs: list[Run]) -> dict[str, list[tuple[list[str], int]]]:
    """group slug -> each answer's not-separable set and its number of competing strategies."""
    return {g.key.slug: [(rec.not_separable, len(rec.standings)) for rec in g.analysis.recommendations]
            for g in aggregate(runs)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", nargs="+", type=Path, help="results folders (records with their predictions)")
    p.add_argument("--shuffles", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    inputs = load_inputs(args.results)
    runs = [r for r in inputs.runs if not r.data["synthetic"]]
    if not runs:
        print("no records of real data under " + ", ".join(map(str, args.results)), file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    observed = answers(runs)
    tallies: dict[str, list[int]] = {slug: [0, 0, 0] for slug in observed}  # answers, singletons, exclusions
    for _ in range(args.shuffles):
        for slug, sets in answers(shuffled(runs, rng)).items():
            for s, k in sets:
                t = tallies.setdefault(slug, [0, 0, 0])
                t[0] += 1
                t[1] += len(s) == 1
                t[2] += len(s) < k
    for slug, (n, single, excluded) in tallies.items():
        print(f"{slug}: observed sets {[s for s, _ in observed.get(slug, [])]}")
        print(f"  {args.shuffles} shuffles, {n} answers: one-strategy set {single}/{n} ({single / max(n, 1):.1%}), "
              f"a strategy excluded {excluded}/{n} ({excluded / max(n, 1):.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
