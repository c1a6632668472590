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
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from medft_bench.data.arrays import SPLITS
from medft_bench.io import atomic_path
from medft_bench.vocabulary import MULTI_LABEL

DEFAULT_SPLITS = {"train": 256, "val": 128, "test": 128}
LABEL_NOISE = 0.05
GENERATOR_VERSION = 2


CHUNK_ELEMENTS = 1 << 22  # image values rendered at once: about 32 MB per float64 temporary


# Every split is drawn in two phases from one generator: first everything per image (labels, positions,
# textures, tints: O(n) numbers), then the pixel noise, chunk after chunk in image order. The pixel noise is the
# last draw of a split and a generator draws a long array value after value, so drawing it in consecutive chunks
# gives the same values as drawing it at once: a split written in chunks is byte for byte the split generated
# whole (tests/oracles/synthetic_v2.py is the generator before chunking; the tests compare the two).


def _axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    ax = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = np.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _draw_coarse(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.normal(0.0, 1.0, (n, 4, 4)).astype(np.float32)


def _background(coarse: np.ndarray, size: int) -> np.ndarray:
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


def _single_label_renderer(labels: np.ndarray, n_classes: int, size: int, ordinal: bool,
                           rng: np.random.Generator) -> Callable[[slice], np.ndarray]:
    """Draw every image's parameters now; the returned function renders the images of a slice."""
    n = len(labels)
    cx = rng.uniform(0.3, 0.7, (n, 1, 1)).astype(np.float32)
    cy = rng.uniform(0.3, 0.7, (n, 1, 1)).astype(np.float32)
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
    cos, sin = np.cos(theta), np.sin(theta)
    # A class-dependent overall exposure, jittered so that it overlaps between classes: a global cue that
    # even a randomly initialised network picks up within a few steps (the smoke tier's check).
    exposure = 0.07 * ((labels * 2) % 3) + rng.normal(0, 0.05, n)
    coarse = _draw_coarse(n, rng)
    xx, yy = _axes(size)

    def render(s: slice) -> np.ndarray:
        dx, dy = xx[None] - cx[s], yy[None] - cy[s]
        mask = _shape_mask(kind[s], dx, dy, r[s])
        proj = dx * cos[s, None, None] + dy * sin[s, None, None]
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq[s, None, None] * proj * 2)
        return (_background(coarse[s], size) + exposure[s, None, None]
                + mask * amp[s, None, None] * (0.55 + 0.45 * stripes))

    return render


def _multi_label_renderer(labels: np.ndarray, size: int, rng: np.random.Generator
                          ) -> Callable[[slice], np.ndarray]:
    n, n_labels = labels.shape
    coarse = _draw_coarse(n, rng)
    side = int(np.ceil(np.sqrt(n_labels)))
    blobs = []
    for j in range(n_labels):
        gx, gy = (j % side + 0.5) / side, (j // side + 0.5) / side
        cx = gx + rng.normal(0, 0.03, (n, 1, 1))
        cy = gy + rng.normal(0, 0.03, (n, 1, 1))
        blobs.append((cx, cy, labels[:, j, None, None] * rng.uniform(0.25, 0.45, (n, 1, 1))))
    xx, yy = _axes(size)
    width = 2 * (0.25 / side) ** 2

    def render(s: slice) -> np.ndarray:
        img = _background(coarse[s], size)
        for cx, cy, weight in blobs:
            img += weight[s] * np.exp(-((xx - cx[s]) ** 2 + (yy - cy[s]) ** 2) / width)
        return img

    return render


def _tints(labels: np.ndarray, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    phase = 2 * np.pi * labels / max(1, n_classes)
    tints = np.stack([0.8 + 0.2 * np.cos(phase + k * 2 * np.pi / 3) for k in range(3)], -1)
    return (tints + rng.normal(0, 0.05, tints.shape)).astype(np.float32)


def image_shape(n_channels: int, size: int) -> tuple[int, ...]:
    """One image's shape in MedMNIST's layout: (H, W) grey, (H, W, 3) RGB."""
    return (size, size) if n_channels == 1 else (size, size, 3)


def plan_split(task: str, n_labels: int, n_channels: int, size: int, n: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """A split's labels (int, (n, L)) and an iterator of its uint8 images in chunks, in order.

    The images are rendered lazily, ``CHUNK_ELEMENTS`` values at a time, so memory does not grow with ``n``;
    ``rng`` must not be used by anyone else until the iterator is exhausted.
    """
    if task == MULTI_LABEL:
        prevalence = np.linspace(0.08, 0.3, n_labels)
        labels = (rng.random((n, n_labels)) < prevalence).astype(np.int64)
        render = _multi_label_renderer(labels, size, rng)
        shown = labels.argmax(1)
        flip = rng.random(labels.shape) < LABEL_NOISE / 2
        labels = np.where(flip, 1 - labels, labels)
    else:
        weights = 1.0 / (1.0 + 0.25 * np.arange(n_labels))
        shown = rng.choice(n_labels, size=n, p=weights / weights.sum())
        render = _single_label_renderer(shown, n_labels, size, task == "ordinal-regression", rng)
        noisy = rng.random(n) < LABEL_NOISE
        labels = np.where(noisy, rng.integers(0, n_labels, n), shown)[:, None].astype(np.int64)
    tints = _tints(shown, n_labels, rng) if n_channels == 3 else None
    step = max(1, CHUNK_ELEMENTS // int(np.prod(image_shape(n_channels, size))))

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, n, step):
            s = slice(start, min(n, start + step))
            img = render(s)
            if tints is not None:
                img = img[..., None] * tints[s, None, None, :]
            img = img + rng.normal(0, 0.07, img.shape).astype(np.float32)
            yield (np.clip(img, 0, 1) * 255).round().astype(np.uint8)

    return labels, chunks()


def make_split(task: str, n_labels: int, n_channels: int, size: int, n: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, MedMNIST layout) and labels (int, (n, L)) for one split, in memory."""
    labels, chunks = plan_split(task, n_labels, n_channels, size, n, rng)
    images = np.empty((n, *image_shape(n_channels, size)), np.uint8)
    start = 0
    for chunk in chunks:
        images[start : start + len(chunk)] = chunk
        start += len(chunk)
    return images, labels


def _split_rng(seed: int, index: int, size: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, size])


def make_arrays(task: str, n_labels: int, n_channels: int, size: int,
                splits: dict[str, int] | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """The six MedMNIST arrays for a task type, deterministic in ``seed``, in memory."""
    splits = {**DEFAULT_SPLITS, **(splits or {})}
    out: dict[str, np.ndarray] = {}
    for i, split in enumerate(SPLITS):
        out[f"{split}_images"], out[f"{split}_labels"] = make_split(
            task, n_labels, n_channels, size, splits[split], _split_rng(seed, i, size)
        )
    return out


def write_npz(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write arrays as a compressed npz atomically (temporary file, fsync, rename)."""
    return _write_npz_members(path, ((k, a.shape, a.dtype, iter([a])) for k, a in arrays.items()))


def _write_npz_members(path: str | os.PathLike[str],
                       members: Iterable[tuple[str, tuple[int, ...], np.dtype, Iterator[np.ndarray]]]) -> Path:
    """A compressed npz, each member streamed from its chunks (C order, along the first axis): what
    ``np.savez_compressed`` writes, without holding an array in memory."""
    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key, shape, dtype, chunks in members:
            with zf.open(f"{key}.npy", "w", force_zip64=True) as out:
                header = {"descr": npformat.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                          "shape": tuple(int(d) for d in shape)}
                npformat.write_array_header_1_0(out, header)
                for chunk in chunks:
                    out.write(np.ascontiguousarray(chunk, dtype=dtype).data)
    return path


def write_synthetic_medmnist(flag: str, size: int, root: str | os.PathLike[str],
                             splits: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write a synthetic file for MedMNIST ``flag`` under ``root`` with the official file name.

    The images are generated and compressed chunk by chunk, so a split of any size is written in bounded memory
    (the same arrays as :func:`make_arrays`).
    """
    from medft_bench.data import medmnist as mm

    meta = mm.info(flag)
    task, n_labels, channels = meta["task"], mm.n_labels(flag), meta["n_channels"]
    splits = {**DEFAULT_SPLITS, **(splits or {})}

    def members() -> Iterator[tuple[str, tuple[int, ...], np.dtype, Iterator[np.ndarray]]]:
        for i, split in enumerate(SPLITS):
            n = splits[split]
            labels, chunks = plan_split(task, n_labels, channels, size, n, _split_rng(seed, i, size))
            yield f"{split}_images", (n, *image_shape(channels, size)), np.dtype(np.uint8), chunks
            yield f"{split}_labels", labels.shape, labels.dtype, iter([labels])

    return _write_npz_members(Path(root) / mm.file_name(flag, size, official=False), members())
