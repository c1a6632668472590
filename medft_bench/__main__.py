"""Command line: run one cell by hand, or list what exists.

    python -m medft_bench run --tier smoke --dataset pneumoniamnist --backbone resnet50 --strategy lp \\
        --seed 0 --results-dir results
    python -m medft_bench list strategies
    python -m medft_bench grid --tier smoke --ray-address local   # a whole grid on Ray or Slurm
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from medft_bench.errors import MedftError, NotApplicable, ResultsWriteError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m medft_bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or reuse) one benchmark cell and print its summary")
    r.add_argument("--tier", default="smoke", help="tier preset (smoke, quick, standard, full); default smoke")
    r.add_argument("--dataset", required=True, help="MedMNIST flag or registered folder dataset")
    r.add_argument("--backbone", required=True, help="timm model name (resnet50, densenet121, vgg19, ...)")
    r.add_argument("--strategy", required=True, help="strategy name (python -m medft_bench list strategies)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--results-dir", default="results", help="where the record goes (default results/)")
    r.add_argument("--data-root", default=None, help="folder holding the dataset files")
    r.add_argument("--folder-dataset", action="append", default=[], metavar="NAME=PATH[,key=value...]",
                   help="register your own image-folder or CSV-manifest dataset (repeatable)")
    r.add_argument("--synthetic", nargs="?", const="", default=None, metavar="train=N,val=N,test=N",
                   help="generated MedMNIST-format data instead of the real files (recorded as synthetic)")
    r.add_argument("--weights", default=None, help="pretrained | random | weights file or directory")
    r.add_argument("--img-size", type=int, default=None, help="dataset image size (MedMNIST: 28/64/128/224)")
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--lr", type=float, default=None)
    r.add_argument("--max-train-samples", type=int, default=None)
    r.add_argument("--protocol", default="study", metavar="study|tuned",
                   help="study (default): the tier's fixed learning rate; tuned: a learning-rate sweep, the best "
                        "trial on validation evaluated on test")
    r.add_argument("--lr-grid", default=None, metavar="LR,LR,...",
                   help="with --protocol tuned: the learning rates to try (default: the tier's, else the strategy's)")
    r.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter (JSON value), e.g. --param block=2; repeatable")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    r.add_argument("--rerun", action="store_true", help="recompute even when a record exists")
    r.add_argument("--no-download", action="store_true", help="never download MedMNIST files")
    r.add_argument("--json", action="store_true", help="print the whole record as JSON")
    ls = sub.add_parser("list", help="list strategies, tiers, datasets or the study backbones")
    ls.add_argument("what", choices=["strategies", "tiers", "datasets", "backbones"])
    from medft_bench.cluster.cli import add_grid_parser

    add_grid_parser(sub)
    return p


def _params(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise MedftError(f"--param {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from medft_bench.config import freeze_params, parse_lr_grid
    from medft_bench.data.folders import default_size_note, register_from_option, registry
    from medft_bench.grid import GridOptions, build_grid, check_cells, parse_splits
    from medft_bench.runner import run_or_reuse
    from medft_bench.tiers import get_tier

    for text in args.folder_dataset:
        register_from_option(text)
    overrides = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                                   "max_train_samples": args.max_train_samples}.items() if v is not None}
    opts = GridOptions(datasets=[args.dataset], backbones=[args.backbone], strategies=[args.strategy],
                       seeds=[args.seed], img_sizes=None if args.img_size is None else [args.img_size],
                       weights=args.weights,
                       train=overrides, synthetic=parse_splits(args.synthetic) if args.synthetic is not None else None,
                       protocol=args.protocol, lr_grid=parse_lr_grid(args.lr_grid) if args.lr_grid else None)
    tier = get_tier(args.tier)
    cfg = build_grid(tier, opts)[0]  # one cell: the tier's first image size unless --img-size says
    if args.param:
        cfg = replace(cfg, strategy_params=freeze_params({**cfg.params(), **_params(args.param)}))
        check_cells([cfg])
    note = None
    if args.img_size is None and cfg.dataset in registry():
        note = default_size_note(cfg.dataset)
    try:
        out = run_or_reuse(cfg, args.results_dir, rerun=args.rerun, data_root=args.data_root, device=args.device,
                           download=not args.no_download)
    except ResultsWriteError as exc:
        if exc.record is not None:  # computed but not stored: show it rather than lose it
            _show(cfg.cell_id, exc.record, "not written (see the error below)", False, args.json, note)
        raise
    return _show(cfg.cell_id, out.record, str(out.path), out.reused, args.json, note)


def _show(cell_id: str, rec: dict, where: str, reused: bool, as_json: bool, note: str | None = None) -> int:
    """Print a record's summary (or the whole record as JSON); the exit code its status gives."""
    if as_json:
        print(json.dumps(rec, indent=1, sort_keys=True))
        return 0 if rec["status"] == "ok" else 1
    print(f"{cell_id}: {rec['status']}{' (reused)' if reused else ''}"
          f"{' [SYNTHETIC data]' if rec['data']['synthetic'] else ''}")
    if note:
        print(f"  data: {note}")
    if rec["metrics"]:
        t, primary = rec["metrics"]["test"], rec["metrics"]["primary"]
        shown = ", ".join(f"{k} {v:.4f}" for k, v in t.items() if v is not None)
        print(f"  test: {shown}   (primary: {primary}; majority-class acc {rec['metrics']['majority']['acc']:.4f})")
    tuning = rec.get("tuning")
    if tuning and tuning["grid"]:
        trials = ", ".join(f"{t['lr']:g}" + ("" if t["status"] == "ok" else f" ({t['status']})")
                           for t in tuning["trials"])
        chosen = "none chosen" if tuning["chosen_lr"] is None else f"lr {tuning['chosen_lr']:g} chosen on validation"
        print(f"  tuned: {chosen} of {trials} ({len(tuning['trials'])} trials; model {tuning['model']}); "
              "train s below is the whole sweep's")
    elif tuning:
        print(f"  tuned: {tuning.get('note', 'no learning rate to tune')}")
    c = rec["costs"]
    print(f"  train {c['train_s']:.1f} s, eval {c['eval_s']:.1f} s, {c['epochs_run']} epochs, "
          f"{c['trainable_params']:,} of {c['total_params']:,} parameters trained")
    if rec.get("weak_result"):
        print(f"  weak result: no better than the majority class ({rec['weak_result']})")
    if rec["error"]:
        print(f"  error: {rec['error']}")
    print(f"  record: {where}")
    return 0 if rec["status"] == "ok" else 1


def _list(what: str) -> int:
    if what == "strategies":
        from medft_bench.strategies.registry import get_strategy, strategy_names

        for name in strategy_names():
            cls = get_strategy(name)
            print(f"{name:15s} {'study' if cls.in_study else '     '}  {cls.description}")
    elif what == "tiers":
        from medft_bench.tiers import TIERS

        for t in TIERS.values():
            print(f"{t.name:9s} {t.description}")
    elif what == "datasets":
        from medft_bench.data.sources import dataset_names

        print("\n".join(dataset_names()))
    else:
        from medft_bench.tiers import STUDY_BACKBONES

        print("\n".join(STUDY_BACKBONES) + "\n(any timm model name works, e.g. resnet18, convnext_tiny)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "grid":
            from medft_bench.cluster.cli import run_grid

            return run_grid(args)
        return _run(args) if args.command == "run" else _list(args.what)
    except NotApplicable as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return 0
    except MedftError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no record was written for the running cell", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
