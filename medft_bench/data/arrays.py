"""In-memory dataset splits as uint8 tensors, and the validating MedMNIST-format npz reader."""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medft_bench.errors import DataError

SPLITS = ("train", "val", "test")
NPZ_KEYS = tuple(f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels"))
MULTI_LABEL = "multi-label, binary-class"
TASKS = ("binary-class", "multi-class", "ordinal-regression", MULTI_LABEL)


@dataclass
class Split:
    """One split: images as (N, C, H, W) uint8, labels as (N,) int64 or (N, L) float for multi-label."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, n: int, seed: int) -> Split:
        """A seeded random subset of ``n`` samples (the whole split when ``n >= len``)."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        return Split(self.images[idx], self.labels[idx])


@dataclass
class DataBundle:
    """A dataset ready for training: three splits plus what the results must say about it."""

    name: str
    task: str
    n_classes: int
    n_channels: int
    train: Split
    val: Split
    test: Split
    modality: str = ""
    label_names: dict[str, str] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _images_to_tensor(arr: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.ndim == 3:
        return t.unsqueeze(1)  # (N, H, W) grey -> (N, 1, H, W)
    return t.permute(0, 3, 1, 2).contiguous()  # (N, H, W, 3) -> (N, 3, H, W)


def load_npz(path: str | Path, *, task: str, n_labels: int, n_channels: int) -> dict[str, Split]:
    """Read and validate a MedMNIST-format npz into three splits.

    ``n_labels`` is the number of classes (single-label) or of labels (multi-label). Every check names the
    file and the problem; nothing is written or deleted.
    """
    path = Path(path)
    if task not in TASKS:
        raise DataError(f"{path}: unknown task type {task!r}; expected one of {TASKS}")
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable MedMNIST .npz file ({type(exc).__name__}: {exc}); "
            "the file is truncated or corrupt: delete it and download it again"
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a bare .npy array saved under an .npz name
        raise DataError(f"{path}: holds a single {type(npz).__name__}, not an .npz archive of {list(NPZ_KEYS)}")
    with npz:
        missing = [k for k in NPZ_KEYS if k not in npz.files]
        if missing:
            raise DataError(f"{path}: missing arrays {missing}; a MedMNIST file holds exactly {list(NPZ_KEYS)}")
        try:
            arrays = {k: npz[k] for k in NPZ_KEYS}
        except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as exc:
            raise DataError(f"{path}: an array could not be read ({exc}); the file is truncated or corrupt") from None
    out: dict[str, Split] = {}
    for split in SPLITS:
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        where = f"{path}: {split}"
        if images.dtype != np.uint8:
            raise DataError(f"{where}_images has dtype {images.dtype}; MedMNIST images are uint8")
        want_ndim = 3 if n_channels == 1 else 4
        if images.ndim != want_ndim or (n_channels == 3 and images.shape[-1] != 3):
            raise DataError(
                f"{where}_images has shape {images.shape}; expected (N, H, W)"
                f"{'' if n_channels == 1 else ' + (3,)'} for {n_channels}-channel images"
            )
        if images.shape[1] != images.shape[2]:
            raise DataError(f"{where}_images are not square: {images.shape[1]}x{images.shape[2]}")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{where}_labels has dtype {labels.dtype}; MedMNIST labels are integers")
        if labels.ndim == 1:
            labels = labels[:, None]
        if labels.ndim != 2 or len(labels) != len(images):
            raise DataError(
                f"{where}: {len(images)} images but labels of shape {labels.shape}; expected ({len(images)}, L)"
            )
        if len(images) == 0:
            raise DataError(f"{where}: the split is empty")
        if task == MULTI_LABEL:
            if labels.shape[1] != n_labels:
                raise DataError(f"{where}_labels has {labels.shape[1]} columns; this dataset has {n_labels} labels")
            if labels.min() < 0 or labels.max() > 1:
                raise DataError(f"{where}_labels has values outside 0/1 for a multi-label task")
            label_t = torch.from_numpy(labels.astype(np.float32))
        else:
            if labels.shape[1] != 1:
                raise DataError(f"{where}_labels has {labels.shape[1]} columns; a single-label task has 1")
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= n_labels:
                raise DataError(f"{where}_labels range {lo}..{hi} is outside 0..{n_labels - 1} for {n_labels} classes")
            label_t = torch.from_numpy(labels[:, 0].astype(np.int64))
        out[split] = Split(_images_to_tensor(images), label_t)
    sizes = {s.images.shape[-1] for s in out.values()}
    if len(sizes) != 1:
        raise DataError(f"{path}: splits have different image sizes {sorted(sizes)}")
    return out
