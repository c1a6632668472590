"""Synthetic data in MedMNIST's exact npz format, for offline runs, CI and the smoke tier.

Each class is a lesion prototype: a shape (disc, ring, square, cross), a stripe texture orientation, an
intensity and (for RGB) a tint, drawn at a random position and scale over a smooth background, under
pixel noise and a little label noise. Classes are learnable from a few hundred images but not trivially
separable, so a training run can be asserted to beat chance and better strategies can show a difference.
Ordinal grades grow in intensity and texture frequency; multi-label data places one small blob per
present label at a jittered grid position. It is never real data: records say ``synthetic: true``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medft_bench.data.arrays import MULTI_LABEL, SPLITS
from medft_bench.io import atomic_path

DEFAULT_SPLITS = {"train": 256, "val": 128, "test": 128}
LABEL_NOISE = 0.05
GENERATOR_VERSION = 2


def _grid(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    ax = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    cx = rng.uniform(0.3, 0.7, (n, 1, 1)).astype(np.float32)
    cy = rng.uniform(0.3, 0.7, (n, 1, 1)).astype(np.float32)
    return xx[None] - cx, yy[None] - cy


def _background(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.normal(0.0, 1.0, (n, 4, 4)).astype(np.float32)
    reps = -(-size // 4)
    smooth = np.kron(coarse, np.ones((reps, reps), np.float32))[:, :size, :size]
    return 0.25 + 0.06 * smooth


def _shape_mask(kind: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    d = np.sqrt(dx**2 + dy**2)
    ax, ay = np.abs(dx), np.abs(dy)
    masks = np.stack(
        [
            d < r,
            np.abs(d - r) < 0.35 * r,
            np.maximum(ax, ay) < 0.85 * r,
            ((ax < 0.3 * r) & (ay < r)) | ((ay < 0.3 * r) & (ax < r)),
        ]
    ).astype(np.float32)
    return np.take_along_axis(masks, kind[None, :, None, None], axis=0)[0]


def _single_label_images(labels: np.ndarray, n_classes: int, size: int, ordinal: bool,
                         rng: np.random.Generator) -> np.ndarray:
    n = len(labels)
    dx, dy = _grid(n, size, rng)
    r = rng.uniform(0.14, 0.24, (n, 1, 1)).astype(np.float32)
    if ordinal:
        kind = np.zeros(n, np.int64)
        theta = np.zeros(n, np.float32)
        amp = 0.15 + 0.5 * labels / max(1, n_classes - 1)
        freq = 2.0 + 1.5 * labels
    else:
        kind = labels % 4
        theta = (labels // 4 % 3) * (np.pi / 3)
        amp = 0.35 + 0.3 * ((labels * 3) % 5) / 4
        freq = np.full(n, 4.0)
    theta = theta + rng.normal(0, 0.15, n)
    amp = amp * rng.uniform(0.8, 1.2, n)
    mask = _shape_mask(kind, dx, dy, r)
    proj = dx * np.cos(theta)[:, None, None] + dy * np.sin(theta)[:, None, None]
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq[:, None, None] * proj * 2)
    # A class-dependent overall exposure, jittered so that it overlaps between classes: a global cue that
    # even a randomly initialised network picks up within a few steps (the smoke tier's check).
    exposure = 0.07 * ((labels * 2) % 3) + rng.normal(0, 0.05, n)
    return _background(n, size, rng) + exposure[:, None, None] + mask * amp[:, None, None] * (0.55 + 0.45 * stripes)


def _multi_label_images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    n, n_labels = labels.shape
    ax = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    img = _background(n, size, rng)
    side = int(np.ceil(np.sqrt(n_labels)))
    for j in range(n_labels):
        gx, gy = (j % side + 0.5) / side, (j // side + 0.5) / side
        cx = gx + rng.normal(0, 0.03, (n, 1, 1))
        cy = gy + rng.normal(0, 0.03, (n, 1, 1))
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (0.25 / side) ** 2))
        img += labels[:, j, None, None] * rng.uniform(0.25, 0.45, (n, 1, 1)) * blob
    return img


def _tint(img: np.ndarray, labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    phase = 2 * np.pi * labels / max(1, n_classes)
    tints = np.stack([0.8 + 0.2 * np.cos(phase + k * 2 * np.pi / 3) for k in range(3)], -1)
    tints = tints + rng.normal(0, 0.05, tints.shape)
    return img[..., None] * tints[:, None, None, :].astype(np.float32)


def make_split(task: str, n_labels: int, n_channels: int, size: int, n: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, MedMNIST layout) and labels (int, (n, L)) for one split."""
    if task == MULTI_LABEL:
        prevalence = np.linspace(0.08, 0.3, n_labels)
        labels = (rng.random((n, n_labels)) < prevalence).astype(np.int64)
        img = _multi_label_images(labels, size, rng)
        shown = labels.argmax(1)
        flip = rng.random(labels.shape) < LABEL_NOISE / 2
        labels = np.where(flip, 1 - labels, labels)
    else:
        weights = 1.0 / (1.0 + 0.25 * np.arange(n_labels))
        shown = rng.choice(n_labels, size=n, p=weights / weights.sum())
        img = _single_label_images(shown, n_labels, size, task == "ordinal-regression", rng)
        noisy = rng.random(n) < LABEL_NOISE
        labels = np.where(noisy, rng.integers(0, n_labels, n), shown)[:, None].astype(np.int64)
    if n_channels == 3:
        img = _tint(img, shown, n_labels, rng)
    img = img + rng.normal(0, 0.07, img.shape).astype(np.float32)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8), labels


def make_arrays(task: str, n_labels: int, n_channels: int, size: int,
                splits: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The six MedMNIST arrays for a task type, deterministic in ``seed``."""
    splits = {**DEFAULT_SPLITS, **(splits or {})}
    out: dict[str, np.ndarray] = {}
    for i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, i, size])
        out[f"{split}_images"], out[f"{split}_labels"] = make_split(
            task, n_labels, n_channels, size, splits[split], rng
        )
    return out


def write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays as an npz atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a name
        np.savez_compressed(f, **arrays)
    return path


def write_synthetic_medmnist(flag: str, size: int, root: str | os.PathLike[str],
                             splits: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write a synthetic file for MedMNIST ``flag`` under ``root`` with the official file name."""
    from medft_bench.data import medmnist as mm

    meta = mm.info(flag)
    arrays = make_arrays(meta["task"], mm.n_labels(flag), meta["n_channels"], size, splits, seed)
    return write_npz(Path(root) / mm.file_name(flag, size, official=False), arrays)
