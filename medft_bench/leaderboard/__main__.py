"""``python -m medft_bench.leaderboard``: publish the leaderboard from result records."""

from __future__ import annotations

import argparse
import sys

from medft_bench.errors import MedftError
from medft_bench.leaderboard.aggregate import METRICS

PROG = "python -m medft_bench.leaderboard"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Aggregate medft-bench result records into Markdown pages, terminal tables, PNG plots and "
                    "summary.json. Records of different tiers, image sizes, weights or synthetic/real data are "
                    "never averaged together.")
    p.add_argument("results", nargs="*", default=None, metavar="RESULTS",
                   help="result directories or record files (default: results/); several are merged, e.g. "
                        "shards from several machines")
    p.add_argument("--benchmark-json", action="append", default=[], metavar="FILE",
                   help="a pytest-benchmark JSON file; its benchmarks' extra_info['record_path'] name records "
                        "to include (repeatable)")
    p.add_argument("--out", default="leaderboard", metavar="DIR",
                   help="where to write the Markdown, PNGs and summary.json (default: leaderboard/)")
    p.add_argument("--metric", choices=METRICS, default=None,
                   help="rank every dataset by this test metric (default: AUC for multi-label datasets, "
                        "balanced accuracy for the rest)")
    p.add_argument("--all-metrics", action="store_true", help="show every metric in the details tables")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--plain", action="store_true", help="plain-text tables even on a terminal")
    out.add_argument("--quiet", action="store_true", help="no terminal tables (problems are still reported)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    results = args.results if args.results else ([] if args.benchmark_json else ["results"])
    from medft_bench.leaderboard.publish import NoRecordsError, publish

    try:
        pub = publish(results, args.benchmark_json, out=args.out, metric=args.metric, all_metrics=args.all_metrics)
    except NoRecordsError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p.path}: {p.reason}", file=sys.stderr)
        return 1
    except (MedftError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    files = [str(pub.out / f) for f in pub.files]
    if args.quiet:
        if pub.inputs.problems:
            print(f"{PROG}: {len(pub.inputs.problems)} file(s) skipped, listed in {pub.out / 'README.md'}",
                  file=sys.stderr)
        return 0
    from medft_bench.leaderboard.render_rich import print_report

    print_report(pub.groups, pub.inputs, pub.meta, plain=True if args.plain else None, all_metrics=args.all_metrics,
                 files=files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
