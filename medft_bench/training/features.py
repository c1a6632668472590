"""Frozen-backbone features, computed once per image and reused while only the head trains.

Two levels. In memory, per cell: LP, the LP stage of LP-FT and the kNN probe run the backbone once per
image, then train the head (or vote) on the cached features. On disk, across cells: the features of a
split are saved under ``cache_dir()/features/`` keyed by everything they depend on, so that LP, LP-FT and
kNN cells of the same data and backbone (and, with pretrained weights, every seed) extract them once.

The disk key holds the dataset's identity (its file's MD5, which covers synthetic data's generator and seed),
the split, its length and, for a seeded ``max_train_samples`` subset, the hash of its rows (each seed draws
its own), the source image size, the backbone's name, its weights' description and a hash of the backbone's
tensors as they are when the features are taken (so random weights are keyed by their seed's values, and a
strategy that changed the backbone before a head-only epoch gets its own entry), the preprocessing policy, the
autocast dtype, the memory format, the device type and the torch version. Files are written atomically
(temporary file, then rename); a file that does not load or does not match its key is ignored and rewritten.

``MEDFT_FEATURE_CACHE`` picks the mode: ``auto`` (default: on disk unless the weights are random, the
case of tests and the smoke tier, where features are cheap and differ per seed), ``disk`` or ``memory``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from medft_bench.cache import cache_dir
from medft_bench.data.batches import iterate
from medft_bench.errors import MedftError
from medft_bench.io import atomic_path
from medft_bench.training.context import CellContext

log = logging.getLogger(__name__)

MODE_ENV = "MEDFT_FEATURE_CACHE"
MODES = ("auto", "disk", "memory")
FORMAT_VERSION = 1


@torch.inference_mode()
def extract(ctx: CellContext, split: str) -> torch.Tensor:
    """Pre-logit embeddings of every image of ``split`` (model in eval mode, no augmentation), float32."""
    model = ctx.model
    was_training = model.training
    model.eval()
    out = []
    try:
        for images, _ in iterate(ctx.data.split(split), ctx.settings.eval_batch_size, device=ctx.device):
            with ctx.autocast():
                out.append(ctx.backbone.features(ctx.to_input(images)).float())
    finally:
        model.train(was_training)
    return torch.cat(out)


def cache_mode(ctx: CellContext) -> str:
    """``disk`` or ``memory`` for this cell, from ``$MEDFT_FEATURE_CACHE``."""
    mode = (os.environ.get(MODE_ENV) or "auto").strip().lower()
    if mode not in MODES:
        raise MedftError(f"{MODE_ENV}={mode!r}: use one of {', '.join(MODES)}")
    if mode == "auto":
        return "memory" if ctx.cfg.weights == "random" else "disk"
    return mode


def backbone_fingerprint(ctx: CellContext) -> str:
    """A hash of every tensor before the head (parameters and buffers, names, shapes, dtypes, bytes)."""
    h = hashlib.blake2b(digest_size=16)
    head = ctx.backbone.head_prefix + "."
    for name, value in ctx.model.state_dict().items():
        if name.startswith(head):
            continue
        t = value.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}{tuple(value.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


def features_dir() -> Path:
    return cache_dir() / "features"


class FeatureCache:
    """Per-cell cache of features by split; valid while nothing before the head changes.

    ``clear()`` must be called when the backbone may have changed (the engine does so before any epoch
    that trains more than the head); the disk key is then recomputed from the backbone's new tensors.
    """

    def __init__(self, ctx: CellContext, mode: str | None = None,
                 shared: dict[str, torch.Tensor] | None = None) -> None:
        self.ctx = ctx
        self.mode = mode or cache_mode(ctx)
        self._feats: dict[str, torch.Tensor] = {}
        # The tuned protocol's trials start from copies of one backbone: features of that starting backbone,
        # shared between them. Used (and filled) only until the first clear(), before which nothing before
        # the head has trained in this trial.
        self._shared = shared
        self.shared: list[str] = []  # splits taken from another trial
        self._fingerprint: str | None = None
        self.loaded: list[str] = []  # splits read from disk
        self.extracted: list[str] = []  # splits computed by running the backbone
        self.seconds: dict[str, float] = {}  # time spent getting each split (extracting or loading)

    @property
    def active(self) -> bool:
        return bool(self._feats)

    def get(self, split: str) -> torch.Tensor:
        if split not in self._feats and self._shared is not None and split in self._shared:
            self._feats[split] = self._shared[split]
            self.shared.append(split)
        if split not in self._feats:
            t0 = time.perf_counter()
            self._feats[split] = self._load_or_extract(split)
            if self.ctx.device.type == "cuda":
                torch.cuda.synchronize(self.ctx.device)
            self.seconds[split] = self.seconds.get(split, 0.0) + time.perf_counter() - t0
            if self._shared is not None:
                self._shared[split] = self._feats[split]
        return self._feats[split]

    def clear(self) -> None:
        self._feats.clear()
        self._fingerprint = None
        self._shared = None  # the backbone is about to change: its features are this trial's own from now on

    def report(self) -> dict[str, Any]:
        out = {"mode": self.mode, "loaded": list(self.loaded), "extracted": list(self.extracted),
               "seconds": {k: round(v, 4) for k, v in self.seconds.items()}}
        if self.shared:
            out["shared"] = list(self.shared)
        return out

    # -- disk ------------------------------------------------------------------------------------------
    def key(self, split: str) -> dict[str, Any] | None:
        """Everything the features of ``split`` depend on; None when the data has no content hash."""
        ctx = self.ctx
        md5 = ctx.data.identity.get("md5")
        if not md5:
            return None
        if self._fingerprint is None:
            self._fingerprint = backbone_fingerprint(ctx)
        pre = ctx.preprocess.describe()
        pre.pop("augment", None)  # features are taken without augmentation
        key = {
            "format": FORMAT_VERSION,
            "dataset": ctx.data.name,
            "data_md5": md5,
            "image_size": ctx.data.image_size,
            "split": split,
            "n": len(ctx.data.split(split)),
            "backbone": ctx.backbone.name,
            "weights": {k: v for k, v in ctx.backbone.weights.items() if k in ("source", "tag", "sha256")},
            "backbone_hash": self._fingerprint,
            "preprocess": pre,
            "amp": str(ctx.amp_dtype) if ctx.amp_dtype else None,
            "channels_last": ctx.channels_last,
            "device": ctx.device.type,
            "torch": torch.__version__.split("+")[0],
        }
        rows = ctx.data.split(split).rows_sha256()
        if rows is not None:  # a capped subset: each seed draws its own images, and one's features are not another's
            key["rows"] = rows
        return key

    def path(self, key: dict[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:32]
        return features_dir() / key["dataset"] / f"{key['split']}-{digest}.pt"

    def _load_or_extract(self, split: str) -> torch.Tensor:
        key = self.key(split) if self.mode == "disk" else None
        if key is not None:
            path = self.path(key)
            feats = _read(path, key)
            if feats is not None:
                self.loaded.append(split)
                return feats.to(self.ctx.device)
        feats = extract(self.ctx, split)
        self.extracted.append(split)
        if key is not None:
            _write(self.path(key), key, feats)
        return feats


def _canonical(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _read(path: Path, key: dict[str, Any]) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        feats, meta = blob["features"], json.loads(blob["key"])
    except Exception as exc:  # truncated, corrupt or foreign file: recompute and rewrite
        log.warning("ignoring unreadable feature cache %s (%s)", path, exc)
        return None
    if meta != _canonical(key) or not isinstance(feats, torch.Tensor) or feats.shape[0] != key["n"]:
        log.warning("ignoring feature cache %s: its key does not match", path)
        return None
    return feats


def _write(path: Path, key: dict[str, Any], feats: torch.Tensor) -> None:
    try:
        with atomic_path(path, durable=False) as tmp:  # checked against its key when read
            torch.save({"key": json.dumps(_canonical(key), sort_keys=True), "features": feats.detach().cpu()}, tmp)
    except (OSError, RuntimeError) as exc:  # a read-only or full cache costs speed, not the cell
        log.warning("could not write feature cache %s (%s)", path, exc)
