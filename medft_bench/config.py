"""A benchmark cell's configuration: frozen, hashable, and everything that affects its result."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from medft_bench.errors import MedftError

SEED_MAX = 2**32 - 1  # numpy's seed range
MIN_IMG_SIZE = 8
MAX_INPUT_SIZE = 1024  # beyond it a batch of one image no longer fits a GPU's memory for these backbones
PREPROCESS = ("resize", "pad")
# study: the study's fixed settings (one learning rate per cell). tuned: a learning-rate sweep per cell, each
# trial trained on train and scored on validation, the test split evaluated once, for the chosen trial.
PROTOCOLS = ("study", "tuned")


@dataclass(frozen=True)
class TrainSettings:
    """The training schedule. Defaults follow the study's authors (Adam 1e-3, cosine per epoch, patience 3)."""

    epochs: int = 30
    batch_size: int = 96
    eval_batch_size: int = 256
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    optimizer_impl: str = "fused"  # fused | foreach | loop: torch's step kernels; fused is ~5x faster on a CPU
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine (stepped per epoch, per stage) | constant
    patience: int = 3  # early stopping on the validation metric; 0 disables
    monitor: str = "auto"  # validation metric for early stopping; auto = balanced_acc, or auc for multi-label
    max_train_samples: int | None = None
    # Which seed draws a capped training subset: "cell" (the cell's seed: each seed trains on its own images, so
    # the draw of the training images is a source of noise the seeds carry) or a fixed seed ("0": every seed on
    # the same images, how capped cells were made before this setting existed).
    subset_seed: str = "cell"
    augment: bool = False
    preprocess: str = "resize"  # resize | pad: how images reach input_size
    # The size the backbone sees (0: the file's image size, at least the backbone's minimum). MedMNIST v2 shows
    # its 28 px images to ResNets at 224 by resizing, MedMNIST+ by zero-padding (preprocess).
    input_size: int = 0
    interpolation: str = "bilinear"
    compile: bool = False
    amp: str = "auto"  # auto = bf16 on CUDA, off on CPU | bf16 | off
    channels_last: str = "auto"  # auto = on for CUDA | on | off
    # torch's intra-op CPU threads, pinned for the cell (set on entry, restored after) on every front end (local,
    # Ray, Slurm): oneDNN's reductions split by thread, so the count changes a cell's numbers, and it is part of
    # the identity. One: what a one-CPU cluster task has, and on a shared 2-core machine the fastest (two threads
    # stall on each other's barriers; docs/performance.md); use the cores with parallel cells (pytest -n).
    threads: int = 1
    head_init: str = "scaled"  # scaled | zero | default: a new head starts neutral (models/head_init.py)
    # Random weights only: training batches that calibrate the network (models/calibration.py): BatchNorm
    # statistics, or unit-variance layer scaling (LSUV) for a network without BatchNorm
    random_calibration: int = 4


@dataclass(frozen=True)
class CellConfig:
    """One cell of the grid: dataset x backbone x strategy x seed, under a tier's settings."""

    tier: str
    dataset: str
    backbone: str
    strategy: str
    seed: int = 0
    img_size: int = 28  # the dataset file's image size (MedMNIST: 28/64/128/224)
    weights: str = "pretrained"  # pretrained | random | a path to a weight file or directory
    synthetic: bool = False
    synthetic_splits: tuple[tuple[str, int], ...] = ()
    strategy_params: tuple[tuple[str, Any], ...] = ()
    train: TrainSettings = field(default_factory=TrainSettings)
    # The identity of real data (``md5:<file MD5>`` or ``folder:<fingerprint>``), set by the runner before it
    # looks for a record: reuse then requires the same data. Empty for synthetic data, which the config defines.
    data_id: str = ""
    protocol: str = "study"  # study | tuned (PROTOCOLS)
    # The tuned protocol's learning rates when given (a tier's or --lr-grid); empty: the strategy's own grid.
    lr_grid: tuple[float, ...] = ()
    # The arithmetic the cell trains in ("fp32", "bf16"), resolved from ``train.amp`` and the device by the runner
    # before it looks for a record (``amp="auto"`` is bf16 on CUDA, fp32 on the CPU): a GPU run of a cell is
    # another configuration than its CPU run. Empty: not resolved yet (the engine resolves it).
    precision: str = ""

    @property
    def cell_id(self) -> str:
        """Readable id, the same as the pytest case id: tier-dataset[-size]-backbone-strategy[-tuned]-seedN."""
        size = "" if self.img_size == 28 else f"-{self.img_size}"
        protocol = "" if self.protocol == "study" else f"-{self.protocol}"
        return f"{self.tier}-{self.dataset}{size}-{self.backbone}-{self.strategy}{protocol}-seed{self.seed}"

    def params(self) -> dict[str, Any]:
        return dict(self.strategy_params)

    def identity(self) -> dict[str, Any]:
        """Everything that affects the result: the configuration and the data's identity (paths to data roots
        and results do not count; the same file elsewhere is the same data). Every field of
        :data:`IDENTITY_FIELDS` and :data:`ADDED_FIELDS`, always, with its value (defaults included), and the
        identity's version: a record written under an earlier version is found by the store through
        :mod:`medft_bench.results.identity`, never by a rule here."""
        # The effective parameters, defaults included, and the strategy's algorithm version: a changed default or
        # a change of behaviour is another configuration, so that a record computed before it is never reused.
        defaults, version = _strategy_identity(self.strategy)
        # A precision not resolved yet ("") is fp32, as it has always hashed: a grid's cell before the runner resolves
        # it (listing, estimates, a direct compute_cell) has the hash of its CPU record.
        derived = {"strategy_params": {**defaults, **dict(self.strategy_params)}, "strategy_version": version,
                   "synthetic_splits": dict(self.synthetic_splits), "lr_grid": list(self.lr_grid),
                   "precision": self.precision or "fp32"}
        out: dict[str, Any] = {"identity_version": IDENTITY_VERSION, "train": {}}
        for name in identity_fields():
            if name.startswith("train."):
                out["train"][name[len("train."):]] = identity_value(self, name)
            else:
                out[name] = derived[name] if name in derived else identity_value(self, name)
        return out

    @property
    def subset_seed(self) -> int:
        """The seed of the capped training subset's draw (``TrainSettings.subset_seed``)."""
        return self.seed if self.train.subset_seed == "cell" else int(self.train.subset_seed)

    @property
    def config_hash(self) -> str:
        """The hash of :meth:`identity` (:func:`identity_hash`): a record's file name and reuse key."""
        return identity_hash(self.identity())

    def with_strategy(self, strategy: str, params: dict[str, Any] | None = None) -> CellConfig:
        return replace(self, strategy=strategy, strategy_params=freeze_params(params or {}))


# A cell's identity (CellConfig.identity): every field that affects its result, listed once, each always present
# with its value, defaults included ("train.x": TrainSettings.x; strategy_version: the strategy's algorithm
# version). Version 2 is the first explicit list (version 1 was the whole configuration less the settings that
# did not exist yet, deleted under conditions: frozen in medft_bench.results.identity, never extended).
IDENTITY_VERSION = 2
IDENTITY_FIELDS = (
    "tier", "dataset", "img_size", "backbone", "strategy", "seed", "weights", "synthetic", "synthetic_splits",
    "strategy_params", "strategy_version", "data_id", "protocol", "lr_grid", "precision",
    "train.epochs", "train.batch_size", "train.eval_batch_size", "train.lr", "train.optimizer",
    "train.optimizer_impl", "train.weight_decay", "train.momentum", "train.scheduler", "train.patience",
    "train.monitor", "train.max_train_samples", "train.subset_seed", "train.augment", "train.preprocess",
    "train.input_size", "train.interpolation", "train.compile", "train.amp", "train.channels_last",
    "train.threads", "train.head_init", "train.random_calibration",
)
# A setting added later is appended here, never inserted above, and bumps IDENTITY_VERSION:
# (field, the version that added it, its value in every cell computed before it existed). A cell that holds that
# value is also found under the hashes it had before (medft_bench.results.identity); any other value is a new
# configuration. E.g. ("train.label_smoothing", 3, 0.0).
ADDED_FIELDS: tuple[tuple[str, int, Any], ...] = ()


def identity_fields() -> tuple[str, ...]:
    """The fields of the current identity, in order."""
    return IDENTITY_FIELDS + tuple(name for name, _, _ in ADDED_FIELDS)


def identity_value(cfg: CellConfig, name: str) -> Any:
    """The value of one identity field (``"train.x"``: a training setting) as the cell holds it."""
    return getattr(cfg.train, name[len("train."):]) if name.startswith("train.") else getattr(cfg, name)


def identity_hash(identity: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``identity`` as sorted JSON: every version's hash."""
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def effective_precision(amp: str, device_type: str) -> str:
    """The arithmetic a cell trains in: ``"bf16"`` under autocast (``amp="bf16"``, or ``"auto"`` on CUDA), else
    ``"fp32"``."""
    return "bf16" if amp == "bf16" or (amp == "auto" and device_type == "cuda") else "fp32"


# How a cell's identity learns a strategy's defaults and version. The strategies sit above this module (they import
# torch and the engine's context), so it never imports them: medft_bench/__init__.py installs the strategy
# registry's lookup (strategies.registry.strategy_identity) when the package is imported.
StrategyLookup = Callable[[str], tuple[dict[str, Any], int]]
_strategy_lookup: StrategyLookup | None = None


def install_strategy_lookup(lookup: StrategyLookup) -> None:
    """Make ``lookup`` (name -> the strategy's defaults and version) the one :meth:`CellConfig.identity` asks."""
    global _strategy_lookup
    _strategy_lookup = lookup


def _strategy_identity(name: str) -> tuple[dict[str, Any], int]:
    """A registered strategy's defaults and version; ({}, 0) for a name the registry does not know (refused
    before any cell runs, but a configuration can be described without it)."""
    if _strategy_lookup is None:  # never silently: a hash without the defaults would be another configuration's
        raise RuntimeError("no strategy lookup installed: import medft_bench (its __init__ installs the registry's)")
    return _strategy_lookup(name)


def freeze_params(params: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(params.items()))


def _whole(value: Any, low: int, high: int | None = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# setting -> (option, test, the valid range in words). A value outside its range would train nothing, divide by
# zero or fail inside the cell; it is refused before any cell runs.
_RANGES: dict[str, tuple[str, Any, str]] = {
    "epochs": ("--epochs", lambda v: _whole(v, 1), "a whole number >= 1"),
    "batch_size": ("--batch-size", lambda v: _whole(v, 1), "a whole number >= 1"),
    "eval_batch_size": ("eval_batch_size", lambda v: _whole(v, 1), "a whole number >= 1"),
    "lr": ("--lr", _positive, "a finite number > 0"),
    "max_train_samples": ("--max-train-samples", lambda v: v is None or _whole(v, 1),
                          "a whole number >= 1 (leave it out for every training image)"),
    "subset_seed": ("subset_seed", lambda v: v == "cell" or isinstance(v, str) and v.isdigit()
                    and int(v) <= SEED_MAX, f'"cell" (the cell\'s seed) or a seed from 0 to {SEED_MAX} as a string'),
    "patience": ("patience", lambda v: _whole(v, 0), "a whole number >= 0 (0: no early stopping)"),
    "weight_decay": ("weight_decay", lambda v: _positive(v) or v == 0, "a finite number >= 0"),
    "momentum": ("momentum", lambda v: _positive(v) and v < 1 or v == 0, "a number from 0 to below 1"),
    "input_size": ("--input-size", lambda v: v == 0 or _whole(v, MIN_IMG_SIZE, MAX_INPUT_SIZE),
                   f"a whole number from {MIN_IMG_SIZE} to {MAX_INPUT_SIZE} (0: the image size)"),
    "threads": ("threads", lambda v: _whole(v, 1, 1024), "a whole number from 1 to 1024"),
    "random_calibration": ("random_calibration", lambda v: _whole(v, 0),
                           "a whole number >= 0 (0: keep a random network's initialisation uncalibrated)"),
}


def check_numbers(cfg: CellConfig) -> None:
    """Refuse a number outside its valid range with a :class:`MedftError` that names the option and the range."""
    # An image size above the largest input size would decode the dataset into an array nothing can show (at
    # --img-size 1000000000 numpy refused it with a traceback).
    checks = [(f"--seed(s) {cfg.seed!r}", _whole(cfg.seed, 0, SEED_MAX), f"a whole number from 0 to {SEED_MAX}"),
              (f"--img-size {cfg.img_size!r}", _whole(cfg.img_size, MIN_IMG_SIZE, MAX_INPUT_SIZE),
               f"a whole number from {MIN_IMG_SIZE} to {MAX_INPUT_SIZE}")]
    for name, (option, ok, rule) in _RANGES.items():
        value = getattr(cfg.train, name)
        checks.append((f"{option} {value!r}", ok(value), rule))
    for what, ok, rule in checks:
        if not ok:
            raise MedftError(f"{what} is out of range: use {rule}")
    check_protocol(cfg.protocol)
    if cfg.lr_grid and cfg.protocol != "tuned":
        raise MedftError("--lr-grid applies to the tuned protocol only: add --protocol tuned")
    if not all(_positive(v) for v in cfg.lr_grid):
        raise MedftError(f"--lr-grid {','.join(map(str, cfg.lr_grid))} is out of range: use finite numbers > 0")
    if cfg.train.preprocess not in PREPROCESS:
        raise MedftError(f"--preprocess {cfg.train.preprocess!r}: use one of {', '.join(PREPROCESS)}")
    if cfg.train.preprocess == "pad" and 0 < cfg.train.input_size < cfg.img_size:
        raise MedftError(f"--preprocess pad cannot show {cfg.img_size} px images at --input-size "
                         f"{cfg.train.input_size}: padding only enlarges; use --preprocess resize")


def check_protocol(name: str | None) -> None:
    """Refuse an unknown protocol name with one line that lists the valid ones (None: the tier's default)."""
    if name is not None and name not in PROTOCOLS:
        raise MedftError(f"unknown protocol {name!r}; use one of {', '.join(PROTOCOLS)}")


def parse_lr_grid(text: str) -> tuple[float, ...]:
    """``"1e-4,1e-3"`` -> (1e-4, 1e-3), sorted ascending and without repeats; a bad value is a usage error."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise MedftError(f"--lr-grid {text!r}: expected comma-separated learning rates, e.g. 1e-4,1e-3") from None
    if not values or not all(_positive(v) for v in values):
        raise MedftError(f"--lr-grid {text!r}: expected finite learning rates > 0, e.g. 1e-4,1e-3")
    return tuple(sorted(set(values)))
