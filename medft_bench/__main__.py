"""Run benchmark cells without pytest (the same options as `pytest benchmarks`), list what exists, fetch files.

    python -m medft_bench run --tier smoke --datasets pneumoniamnist --backbones resnet50 --strategies lp \\
        --seeds 0 --results-dir results
    python -m medft_bench list tiers
    python -m medft_bench grid --tier smoke --ray-address local   # a whole grid on Ray or Slurm
    python -m medft_bench advise --folder-dataset mine=/data/us --datasets mine   # which strategy for my data
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Sequence

from medft_bench.install import exit_if_not_installed

COMMAND = ["python", "-m", "medft_bench", *sys.argv[1:]]

with exit_if_not_installed(COMMAND):  # a Python without the dependencies: one line that says how to run it
    from medft_bench.cluster.cli import add_grid_arguments, run_grid
    from medft_bench.errors import MedftError
    from medft_bench.options import add_options, build_cells, check_device, gpu_skip_reason, register_folder_datasets
    from medft_bench.results.store import ATTEMPT_SUFFIX
    from medft_bench.results.view import RecordView, is_unofficial_copy
    from medft_bench.runner import Kind
    from medft_bench.text import printable
    from medft_bench.training.progress import resolve_mode
    from medft_bench.vocabulary import RANKING_METRIC


def _add_run(p: argparse.ArgumentParser) -> None:
    add_options(p.add_argument, "cli")


def _add_advise(p: argparse.ArgumentParser) -> None:
    add_options(p.add_argument, "advise")
    p.set_defaults(tier="real")  # a pretrained backbone on a CPU budget: the question is about real transfer


def _advise(args: argparse.Namespace) -> int:
    from medft_bench.advise import cli

    return cli(args)


def _add_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["strategies", "tiers", "datasets", "backbones"],
                   help="strategies; tiers (cells and an estimated duration); datasets (modality, task, classes, "
                        "files on disk); backbones (the study's)")
    p.add_argument("--data-root", default=None, help="with datasets: where to look for the files")
    p.add_argument("--results-dir", default="results", metavar="DIR",
                   help="with tiers: the records whose durations estimate a tier's (default: results/)")


def _run(args: argparse.Namespace) -> int:
    """Each selected cell in turn. Exit code: 0 when every cell that ran is ok (skipped ones included: a missing
    data file or a strategy that does not apply skips that cell, reported, and the run goes on, as under pytest,
    Ray and Slurm), 1 when a record is not ok or nothing was measured (``runner.measured_nothing``: every cell
    skipped, some for missing data), 2 at an error that leaves no record (it stops the run)."""
    from medft_bench.data.folders import default_size_note, registry
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import attempt, measured_nothing

    register_folder_datasets(args)
    check_device(args.device)
    tier, cells = build_cells(args)
    if not cells:
        raise MedftError("the options select no cell (an empty shard?)")
    skip = gpu_skip_reason(tier.marks, args.allow_cpu)
    if skip:
        print(f"skipped: {len(cells)} cell{'s' if len(cells) != 1 else ''} of tier {tier.name}: {skip}",
              file=sys.stderr)
        return 0
    env = RunEnv.from_options(args)
    rc = 0
    skipped: list[Kind] = []
    grid = None
    if len(cells) > 1 and resolve_mode(args.progress) != "off":
        from medft_bench.estimate import GridCount

        grid = GridCount(cells, args.results_dir)
    for cfg in cells:
        if grid is not None:
            print(grid.start(cfg.cell_id), file=sys.stderr, flush=True)
        note = default_size_note(cfg.dataset) if args.img_size is None and cfg.dataset in registry() else None
        out = attempt(cfg, env)
        if out.kind.skipped:
            _line(f"{cfg.cell_id}: skipped: {out.message}")
            skipped.append(out.kind)
            if grid is not None:
                grid.finish(cfg.cell_id, "skipped")
            continue
        if out.kind is Kind.ERROR:
            if out.record is not None:  # computed but not stored: show it rather than lose it
                _show(cfg.cell_id, out.record, "not written (see the error below)", False, args.json, note)
            print(printable(f"error: {out.message}"), file=sys.stderr)
            return 2
        assert out.record is not None
        rc = max(rc, _show(cfg.cell_id, out.record, str(out.path), out.reused, args.json, note))
        if grid is not None:
            status = "reused" if out.reused else "failed" if out.kind is Kind.FAILED else "computed"
            grid.finish(cfg.cell_id, status, None if out.reused else out.view.costs["wall_s"])
    if skipped:
        print(skipped_line(skipped, len(cells)), file=sys.stderr)
    if len(skipped) == len(cells) and measured_nothing(skipped):
        print("nothing was measured: every cell skipped, some for missing data, so the run fails (exit status 1)",
              file=sys.stderr)
        return 1
    return rc


def skipped_line(kinds: list[Kind], total: int) -> str:
    """The run's last word on skipped cells, by cause."""
    from collections import Counter

    by = Counter(k.value for k in kinds)
    causes = ", ".join(f"{n} {why}" for why, n in sorted(by.items()))
    return (f"skipped: {len(kinds)} of {total} cell{'s' if total != 1 else ''} ({causes}); a skipped cell is not a "
            "failure (exit status as for the cells that ran)")


def _show(cell_id: str, record: dict, where: str, reused: bool, as_json: bool, note: str | None = None) -> int:
    """Print a record's summary (or the whole record as JSON); the exit code its status gives. Its fields (an error
    naming a file, a dataset's name) are shown :func:`printable`: none acts on the terminal."""
    rec = RecordView(record)
    if as_json:
        print(json.dumps(record, indent=1, sort_keys=True))
        return 0 if rec.ok else 1
    _line(f"{cell_id}: {rec.status}{' (reused)' if reused else ''}"
          f"{' [SYNTHETIC data]' if rec.data['synthetic'] else ''}")
    if note:
        _line(f"  data: {note}")
    if is_unofficial_copy(rec.data):
        _line(f"  data: NOT the official MedMNIST file (MD5 {rec.data['md5']}): grouped apart as an UNOFFICIAL copy")
    if rec.metrics:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in rec.test.items() if v is not None)
        selected = rec.metrics.get("monitor") or rec.primary
        _line(f"  test: {shown}   (the leaderboard ranks by {RANKING_METRIC}; checkpoints selected on validation "
              f"{selected}; majority-class acc {rec.metrics['majority']['acc']:.4f})")
    tuning = rec.tuning
    if tuning and tuning["grid"]:
        trials = ", ".join(f"{t['lr']:g}" + ("" if t["status"] == "ok" else f" ({t['status']})")
                           for t in tuning["trials"])
        chosen = "none chosen" if tuning["chosen_lr"] is None else f"lr {tuning['chosen_lr']:g} chosen on validation"
        _line(f"  tuned: {chosen} of {trials} ({len(tuning['trials'])} trials; model {tuning['model']}); "
              "train s below is the whole sweep's")
    elif tuning:
        _line(f"  tuned: {tuning.get('note', 'no learning rate to tune')}")
    c = rec.costs
    _line(f"  train {c['train_s']:.1f} s, eval {c['eval_s']:.1f} s, {c['epochs_run']} epochs, "
          f"{c['trainable_params']:,} of {c['total_params']:,} parameters trained")
    if rec.weak_result:
        _line(f"  weak result: no better than the majority class ({rec.weak_result})")
    if rec.error:
        _line(f"  error: {rec.error}")
    if str(where).endswith(ATTEMPT_SUFFIX):
        _line(f"  this attempt is not ok: the earlier ok record is kept and counts; the attempt is at {where}")
    else:
        _line(f"  record: {where}")
    return 0 if rec.ok else 1


def _line(text: str) -> None:
    print(printable(text))


def _list(args: argparse.Namespace) -> int:
    what = args.what
    if what == "strategies":
        from medft_bench.strategies.registry import get_strategy, strategy_names

        for name in strategy_names():
            cls = get_strategy(name)
            print(f"{name:15s} {'study' if cls.in_study else '     '}  {cls.description}")
    elif what == "tiers":
        from medft_bench.listing import tier_rows

        print(_columns(tier_rows(args.results_dir), ("tier", "cells", "estimated time", "description")))
    elif what == "datasets":
        from medft_bench.listing import dataset_rows

        print(_columns(dataset_rows(args.data_root), ("dataset", "modality", "task", "classes", "on disk")))
    else:
        from medft_bench.tiers import STUDY_BACKBONES

        print("\n".join(STUDY_BACKBONES) + "\n(any timm model name works, e.g. resnet18, convnext_tiny)")
    return 0


def _columns(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Rows as left-aligned text columns (the last one unpadded, it may be long)."""
    table = [header, *rows]
    table = [tuple(printable(v) for v in r) for r in table]  # a dataset's modality, a file name: free text
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(v.ljust(w) for v, w in zip(r, widths)), r[-1]]).rstrip() for r in table)


# The subcommands: name -> (help, add its arguments, run it). Add one here.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "run": ("run (or reuse) the cells the options select, one after another, and print each one's summary",
            _add_run, _run),
    "advise": ("which strategy for my data: race the strategies on validation at a share of the full grid's "
               "compute and print the set it cannot separate from the best (docs/advise.md)", _add_advise, _advise),
    "download": ("download and verify every data and weight file the selected cells need (the run options), so "
                 "that they then run offline; --no-download only checks", _add_run, lambda a: _prepare(a)),
    "list": ("list strategies, tiers, datasets or the study backbones", _add_list, _list),
    "grid": ("run a whole grid on a Ray cluster or as a Slurm job array (docs/cluster.md)", add_grid_arguments,
             run_grid),
    "leaderboard": ("the leaderboard: the same as python -m medft_bench.leaderboard (its --help says more)",
                    lambda p: p.add_argument("args", nargs=argparse.REMAINDER), lambda a: _leaderboard(a.args)),
}


def _prepare(args: argparse.Namespace) -> int:
    from medft_bench.prepare import prepare

    return prepare(args)


def _leaderboard(argv: list[str]) -> int:
    from medft_bench.leaderboard.__main__ import main as leaderboard_main

    return leaderboard_main(argv)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medft_bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help_text, add, _) in COMMANDS.items():
        # No shortened names (--epoch for --epochs): one would also hide an option from --grid-config's "the
        # command line wins", as pytest's parser does not take them either.
        add(sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False))
    return p


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    """A warning as the command line says it: ``warning: <message>`` (no source path and line, which a user of
    the command does not need); a warning from outside medft-bench keeps Python's form."""
    if "medft_bench" not in filename and not category.__module__.startswith("medft_bench"):
        return _python_warning(message, category, filename, lineno, line)
    return printable(f"warning: {message}") + "\n"


_python_warning = warnings.formatwarning


def main(argv: Sequence[str] | None = None) -> int:
    previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        warnings.formatwarning = previous


def _main(argv: list[str]) -> int:
    if argv[:1] == ["leaderboard"]:  # every option, --help too, is the leaderboard's own
        return _leaderboard(argv[1:])
    args = _parser().parse_args(argv)
    try:
        if hasattr(args, "grid_config"):
            from medft_bench.options import apply_grid_config

            apply_grid_config(args, argv, "advise" if args.command == "advise" else "cli")
        return COMMANDS[args.command][2](args)
    except MedftError as exc:
        print(printable(f"error: {exc}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no record was written for the running cell", file=sys.stderr)
        return 130


if __name__ == "__main__":
    with exit_if_not_installed(COMMAND):
        sys.exit(main())
