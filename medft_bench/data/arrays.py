"""Dataset splits (uint8 images in memory or memory-mapped, labels as tensors) and the validating npz reader."""

from __future__ import annotations

import mmap
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib import format as npformat

from medft_bench.data import mapped
from medft_bench.errors import DataError
from medft_bench.vocabulary import MULTI_LABEL

SPLITS = ("train", "val", "test")
NPZ_KEYS = tuple(f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels"))
TASKS = ("binary-class", "multi-class", "ordinal-regression", MULTI_LABEL)
RELEASE_BYTES = 32 << 20  # mapped bytes a split reads between two releases of its pages (see Split._release)


@dataclass
class Split:
    """One split: images in the source's layout, (N, H, W) or (N, H, W, 3) uint8, held in memory or memory-mapped
    from a converted file (:mod:`medft_bench.data.mapped`); labels as (N,) int64 or (N, L) float for multi-label.

    ``rows`` selects a subset of the pixel array (see :meth:`subset`) without copying it. Batches are read with
    :meth:`gather` and made channels-first on the device (``medft_bench.data.batches``).
    """

    pixels: np.ndarray
    labels: torch.Tensor
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pixels.dtype != np.uint8 or self.pixels.ndim not in (3, 4):
            raise ValueError(f"split pixels must be uint8 (N, H, W[, C]), not {self.pixels.dtype} "
                             f"{self.pixels.shape}")
        self._mapping = mapped.mapping_of(self.pixels)
        self._touched = 0

    def __len__(self) -> int:
        return int(self.pixels.shape[0] if self.rows is None else len(self.rows))

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def channels(self) -> int:
        return 1 if self.pixels.ndim == 3 else int(self.pixels.shape[3])

    @property
    def memory_mapped(self) -> bool:
        return self._mapping is not None

    @property
    def images(self) -> torch.Tensor:
        """The whole split as one (N, C, H, W) uint8 tensor in memory: a copy, for tests and small data (training
        reads batches through :meth:`gather` instead)."""
        return to_channels_first(torch.from_numpy(self.gather(np.arange(len(self)))))

    def subset(self, n: int, seed: int) -> Split:
        """A seeded random subset of ``n`` samples (the whole split when ``n >= len``), sharing the pixels."""
        if n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        rows = idx.numpy() if self.rows is None else self.rows[idx.numpy()]
        return Split(self.pixels, self.labels[idx], rows)

    def rows_sha256(self) -> str | None:
        """SHA-256 of the positions in the pixel array this split holds (int64, in order): which images a
        :meth:`subset` trained on; None for the whole array."""
        if self.rows is None:
            return None
        import hashlib

        return hashlib.sha256(np.ascontiguousarray(self.rows, dtype=np.int64).tobytes()).hexdigest()

    def gather(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The images at positions ``idx`` (in that order) as one (B, H, W[, C]) array, written to ``out`` when
        given (a pinned staging buffer, say).

        Rows are read in ascending order, so a memory-mapped split is read forwards through its file (what
        read-ahead serves best), and placed back in ``idx``'s order: the batch is the one ``idx`` asks for.
        """
        idx = np.asarray(idx, dtype=np.int64)
        rows = idx if self.rows is None else self.rows[idx]
        order = np.argsort(rows, kind="stable")
        if out is None:
            out = np.empty((len(rows), *self.pixels.shape[1:]), np.uint8)
        out[order] = self.pixels[rows[order]]
        if self._mapping is not None:
            self._release(len(rows) * int(np.prod(self.pixels.shape[1:])))
        return out

    def _release(self, nbytes: int) -> None:
        """Take the mapped pages read so far out of this process's resident set every ``RELEASE_BYTES``.

        The pages stay in the page cache (shared with other processes, reclaimable by the kernel); without
        this a process that has read its whole split once counts all of it in its resident memory, and its
        peak RSS would again grow with the dataset.
        """
        self._touched += nbytes
        if self._touched >= RELEASE_BYTES:
            self.release()

    def release(self) -> None:
        """Drop this split's mapped pages from the process's resident set now (a no-op in memory)."""
        self._touched = 0
        if self._mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mapping.madvise(mmap.MADV_DONTNEED)


def to_channels_first(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W) grey or (B, H, W, C) to a contiguous (B, C, H, W) tensor on the same device."""
    if images.ndim == 3:
        return images.unsqueeze(1)
    return images.permute(0, 3, 1, 2).contiguous()


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
    # The capped training subset the cell drew (seed, n, indices_sha256), recorded as data.train_subset; None:
    # every training image.
    train_subset: dict[str, Any] | None = None

    @property
    def multi_label(self) -> bool:
        return self.task == MULTI_LABEL

    # Seconds spent converting the source into memory-mappable arrays when this load did it (a one-time cost,
    # reported as costs.data_conversion_s), else 0.
    conversion_s: float = 0.0

    @property
    def image_size(self) -> int:
        return self.train.image_size

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError)


def load_npz(path: str | Path, *, task: str, n_labels: int, n_channels: int) -> dict[str, Split]:
    """Read and validate a MedMNIST-format npz into three in-memory splits (see :func:`open_npz`)."""
    return open_npz(path, task=task, n_labels=n_labels, n_channels=n_channels)[0]


def open_npz(path: str | Path, *, task: str, n_labels: int, n_channels: int, size: int | None = None,
             key: str | Callable[[], str] | None = None) -> tuple[dict[str, Split], float]:
    """Validate a MedMNIST-format npz and open its three splits; also return the seconds spent converting.

    ``n_labels`` is the number of classes (single-label) or of labels (multi-label); ``size``, when given, the
    image size the caller expects. Everything is checked from the arrays' headers and the labels before any
    image is read, and every check names the file and the problem; a file that fails leaves nothing written.
    With a ``key`` (the source's MD5 or fingerprint, or a function giving it) and images of at least
    ``mapped.MIN_BYTES``, the images are memory-mapped from a one-time conversion next to the file (see
    :mod:`medft_bench.data.mapped`); otherwise they are read into memory.
    """
    path = Path(path)
    if task not in TASKS:
        raise DataError(f"{path}: unknown task type {task!r}; expected one of {TASKS}")
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except _READ_ERRORS as exc:
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
            headers = {s: _header(npz, f"{s}_images") for s in SPLITS}
            labels = {s: _check_split(path, s, headers[s], npz[f"{s}_labels"], task, n_labels, n_channels)
                      for s in SPLITS}
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: an array could not be read ({exc}); the file is truncated or corrupt") from None
        sizes = {shape[1] for shape, _ in headers.values()}
        if len(sizes) != 1:
            raise DataError(f"{path}: splits have different image sizes {sorted(sizes)}")
        if size is not None and sizes != {size}:
            raise DataError(f"{path}: images are {sizes.pop()} px but {size} px were asked for")
        nbytes = sum(int(np.prod(shape)) for shape, _ in headers.values())
        names = [f"{s}_images" for s in SPLITS]
        try:
            if key is not None and nbytes >= mapped.MIN_BYTES:
                images, seconds = mapped.open_converted(
                    npz, path, names, key() if callable(key) else key, {f"{s}_images": headers[s] for s in SPLITS})
            else:
                images, seconds = {n: npz[n] for n in names}, 0.0
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: an array could not be read ({exc}); the file is truncated or corrupt") from None
    return {s: Split(images[f"{s}_images"], labels[s]) for s in SPLITS}, seconds


def _header(npz: np.lib.npyio.NpzFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """A member's shape and dtype, from its .npy header alone (the images are not decompressed)."""
    with npz.zip.open(f"{name}.npy") as f:
        version = npformat.read_magic(f)
        read = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
        shape, _, dtype = read(f)
    return tuple(shape), dtype


def _check_split(path: Path, split: str, header: tuple[tuple[int, ...], np.dtype], labels: np.ndarray, task: str,
                 n_labels: int, n_channels: int) -> torch.Tensor:
    """Check one split's images (by their header) and labels; return the labels as a tensor."""
    shape, dtype = header
    where = f"{path}: {split}"
    if dtype != np.uint8:
        raise DataError(f"{where}_images has dtype {dtype}; MedMNIST images are uint8")
    want_ndim = 3 if n_channels == 1 else 4
    if len(shape) != want_ndim or (n_channels == 3 and shape[-1] != 3):
        raise DataError(
            f"{where}_images has shape {shape}; expected (N, H, W)"
            f"{'' if n_channels == 1 else ' + (3,)'} for {n_channels}-channel images"
        )
    if shape[1] != shape[2]:
        raise DataError(f"{where}_images are not square: {shape[1]}x{shape[2]}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}_labels has dtype {labels.dtype}; MedMNIST labels are integers")
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or len(labels) != shape[0]:
        raise DataError(f"{where}: {shape[0]} images but labels of shape {labels.shape}; expected ({shape[0]}, L)")
    if shape[0] == 0:
        raise DataError(f"{where}: the split is empty")
    if task == MULTI_LABEL:
        if labels.shape[1] != n_labels:
            raise DataError(f"{where}_labels has {labels.shape[1]} columns; this dataset has {n_labels} labels")
        if labels.min() < 0 or labels.max() > 1:
            raise DataError(f"{where}_labels has values outside 0/1 for a multi-label task")
        return torch.from_numpy(labels.astype(np.float32))
    if labels.shape[1] != 1:
        raise DataError(f"{where}_labels has {labels.shape[1]} columns; a single-label task has 1")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= n_labels:
        raise DataError(f"{where}_labels range {lo}..{hi} is outside 0..{n_labels - 1} for {n_labels} classes")
    return torch.from_numpy(labels[:, 0].astype(np.int64))
