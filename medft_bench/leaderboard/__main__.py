"""``python -m medft_bench.leaderboard``: publish the leaderboard from result records;
``python -m medft_bench.leaderboard compare A/ B/``: compare two result sets by metric."""

from __future__ import annotations

import argparse
import math
import os
import sys

from medft_bench.errors import MedftError, cannot_write
from medft_bench.text import printable
from medft_bench.vocabulary import METRICS

PROG = "python -m medft_bench.leaderboard"


MIN_WIDTH = 40


def _width(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--width takes a whole number of columns, not {text!r}") from None
    if value < MIN_WIDTH:
        raise argparse.ArgumentTypeError(f"--width {value} is too narrow for a table; use {MIN_WIDTH} or more")
    return value


def _percentage_points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"--fail-on-drop takes percentage points, a number >= 0 (e.g. 1.5), not "
                                         f"{text!r}")
    return value


def _output_options(p: argparse.ArgumentParser) -> None:
    out = p.add_mutually_exclusive_group()
    out.add_argument("--plain", action="store_true", help="plain-text tables even on a terminal")
    out.add_argument("--quiet", action="store_true", help="no terminal tables (problems are still reported)")
    p.add_argument("--width", type=_width, default=None, metavar="N",
                   help="lay the terminal tables out for N columns (default: the terminal's width, else 100); "
                        "a wider table is split into parts that repeat its key columns")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Aggregate medft-bench result records into Markdown pages, an HTML page, terminal tables, PNG "
                    "plots, CSV and summary.json. Records of different tiers, image sizes, weights, protocols or "
                    "synthetic/real data are never averaged together. "
                    f"'{PROG} compare A/ B/' compares two result sets instead (see '{PROG} compare --help'); "
                    f"'{PROG} export-mlflow RESULTS --tracking-uri URI' logs the records as MLflow runs.")
    p.add_argument("results", nargs="*", default=None, metavar="RESULTS",
                   help="result directories or record files (default: results/); several are merged, e.g. "
                        "shards from several machines")
    p.add_argument("--benchmark-json", action="append", default=[], metavar="FILE",
                   help="a pytest-benchmark JSON file; its benchmarks' extra_info['record_path'] name records "
                        "to include (repeatable)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, metavar="DIR",
                       help="where to write the pages, plots, CSV and summary.json (default: leaderboard/ inside "
                            "the first RESULTS directory, e.g. results/leaderboard/)")
    where.add_argument("--publish", action="store_true",
                       help="write into the repository's published leaderboard/ folder (same as --out leaderboard)")
    p.add_argument("--metric", choices=METRICS, default=None,
                   help="rank every dataset by this test metric (default: AUC, threshold-free)")
    p.add_argument("--all-metrics", action="store_true", help="show every metric in the details tables")
    _output_options(p)
    return p


def compare_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{PROG} compare",
        description="Compare two result sets by test metric and training time, cell by cell: cells matched by "
                    "cell id and configuration hash, cells whose configuration changed (and which settings), cells "
                    "only in A, only in B. With --fail-on-drop PP it is a regression gate: exit status 3 when B "
                    "regressed against A (0: none; 1: no records; 2: a usage error).")
    p.add_argument("a", metavar="A", help="the first result directory (or record file)")
    p.add_argument("b", metavar="B", help="the second result directory (or record file)")
    p.add_argument("--metric", choices=METRICS, default=None,
                   help="compare this test metric (default: AUC, the ranking metric)")
    p.add_argument("--all", action="store_true", dest="show_all",
                   help="list every matched cell, also those whose status and metric are the same in both")
    p.add_argument("--fail-on-drop", type=_percentage_points, default=None, metavar="PP",
                   help="regression gate: exit with status 3 when a cell in both A and B (same configuration or "
                        "another) has a test metric in B lower than in A by more than PP percentage points (0: any "
                        "drop), or was ok in A and is failed or diverged in B, or is missing in B; each regression "
                        "is printed on a line of its own")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --fail-on-drop: cells only in A are still listed, but are not regressions")
    _output_options(p)
    return p


def _print_tables(tables: list, plain: bool, width: int | None) -> None:
    from medft_bench.leaderboard.render_rich import plain_table, rich_tables, terminal_width

    if plain or not sys.stdout.isatty():
        for t in tables:
            print(plain_table(t, width or terminal_width()))
        return
    from rich.console import Console

    console = Console(width=width)
    for t in tables:
        for rt in rich_tables(t, console):
            console.print(rt)


def compare_main(argv: list[str]) -> int:
    cp = compare_parser()
    args = cp.parse_args(argv)
    if args.allow_missing and args.fail_on_drop is None:
        cp.error("--allow-missing only applies with --fail-on-drop PP")
    from medft_bench.leaderboard.compare import REGRESSION_EXIT, compare, compared, comparison_tables, regressions

    cmp = compare([args.a], [args.b], args.metric)
    for name, side in (("A", cmp.a), ("B", cmp.b)):
        for p in side.problems:
            print(printable(f"{PROG} compare: {name}: skipped {p.path}: {p.reason}"), file=sys.stderr)
        if not side.runs:
            print(printable(f"{PROG} compare: error: no valid result records in {name} ({side.sources[0]})"),
                  file=sys.stderr)
            return 1
    if not args.quiet:
        _print_tables(comparison_tables(cmp, args.a, args.b, args.show_all), args.plain, args.width)
    print(f"{len(cmp.matched)} matched, {len(cmp.changed)} with another configuration, {len(cmp.only_a)} only in A, "
          f"{len(cmp.only_b)} only in B")
    if args.fail_on_drop is None:
        return 0
    found = regressions(cmp, args.fail_on_drop, args.allow_missing)
    for r in found:
        print(printable(f"{'REGRESSION' if r.counted else 'not counted'}: {r.text}"))
    counted = sum(r.counted for r in found)
    if not compared(cmp):  # a gate that saw nothing must not pass
        print(f"regression gate (--fail-on-drop {args.fail_on_drop:g} pp): FAILED, nothing compared (no cell of A "
              "is ok with the metric)")
        return REGRESSION_EXIT
    print(f"regression gate (--fail-on-drop {args.fail_on_drop:g} pp): "
          + (f"FAILED, {counted} regression(s)" if counted else "passed, no regression"))
    return REGRESSION_EXIT if counted else 0


def out_write_error(out: str | os.PathLike[str], exc: OSError) -> MedftError:
    """A read-only or full ``--out`` folder as one line: the folder (every file is written inside it), the cause and
    what to do. The new files are staged and renamed into place only once all are written, so the folder still
    holds its earlier leaderboard."""
    return cannot_write("the leaderboard into", out, exc,
                        "choose another --out (a writable folder with free space); its earlier files are unchanged")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["compare"]:
        return compare_main(argv[1:])
    if argv[:1] == ["export-mlflow"]:
        from medft_bench.leaderboard.mlflow_export import main as export_main

        return export_main(argv[1:], PROG)
    args = parser().parse_args(argv)
    results = args.results if args.results else ([] if args.benchmark_json else ["results"])
    from medft_bench.leaderboard.publish import PUBLISHED, NoRecordsError, default_out, publish

    out = PUBLISHED if args.publish else args.out
    try:
        pub = publish(results, args.benchmark_json, out=out, metric=args.metric, all_metrics=args.all_metrics)
    except NoRecordsError as exc:
        print(printable(f"{PROG}: error: {exc}"), file=sys.stderr)
        for p in exc.problems:
            print(printable(f"  - {p.path}: {p.reason}"), file=sys.stderr)
        return 1
    except MedftError as exc:
        print(printable(f"{PROG}: error: {exc}"), file=sys.stderr)
        return 1
    except OSError as exc:  # the records are read before anything is written: this is the --out folder's
        where = out if out is not None else default_out(results, args.benchmark_json)
        print(printable(f"{PROG}: error: {out_write_error(where, exc)}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # one line, not a traceback: the folder changes as one unit (publish.py)
        print(f"{PROG}: interrupted: the output folder holds the previous leaderboard or this one whole, never a mix",
              file=sys.stderr)
        return 130
    written = (f"Leaderboard written to {pub.out}/ ({len(pub.files)} files): {pub.out / 'README.md'} (Markdown), "
               f"{pub.out / 'leaderboard.html'} (one page), summary.json, records.csv, aggregates.csv, plots")
    if args.quiet:
        if pub.inputs.problems:
            print(f"{PROG}: {len(pub.inputs.problems)} file(s) skipped, listed in {pub.out / 'README.md'}",
                  file=sys.stderr)
        print(written)
        return 0
    from medft_bench.leaderboard.render_rich import print_report

    print_report(pub.groups, pub.inputs, pub.meta, plain=True if args.plain else None, all_metrics=args.all_metrics,
                 written=written, width=args.width)
    return 0


if __name__ == "__main__":
    from medft_bench.install import exit_if_not_installed

    with exit_if_not_installed(["python", "-m", "medft_bench.leaderboard", *sys.argv[1:]]):
        sys.exit(main())
