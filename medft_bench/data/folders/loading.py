"""Loading a folder dataset as a :class:`DataBundle`, and the image size it runs at when none is given."""

from __future__ import annotations

import contextlib
import os
import warnings

import numpy as np

from medft_bench.data.arrays import DataBundle, open_npz
from medft_bench.data.folders.decoding import LOADER_VERSION, decoded_cache, fingerprint
from medft_bench.data.folders.registration import get_spec
from medft_bench.data.folders.scanning import scan
from medft_bench.data.folders.spec import BACKBONE_SIZE
from medft_bench.errors import DataError

MAX_DEFAULT_SIZE = BACKBONE_SIZE  # larger images are reduced to the backbones' input size
SIZE_SAMPLE = 64
_DEFAULT_SIZES: dict[tuple[str, str], int] = {}


MIN_SPLIT = 20  # images of a validation or test split below which its numbers are mostly noise
MIN_PER_CLASS = 2  # images of each class in it
PURPOSE = {"val": "select a checkpoint or a learning rate on", "test": "measure a result on"}


def small_split(split: str, labels: np.ndarray, task: str, classes: tuple[str, ...] | list[str]) -> str | None:
    """Why ``split`` is too small to :data:`PURPOSE` (fewer than :data:`MIN_SPLIT` images, or a class with fewer
    than :data:`MIN_PER_CLASS`), or None. One image of 4 moves a validation score by 25 points."""
    n = len(labels)
    counts = (labels.sum(0) if labels.ndim == 2 else np.bincount(labels.astype(np.int64), minlength=len(classes)))
    thin = [f"{c!r}: {int(k)}" for c, k in zip(classes, counts) if k < MIN_PER_CLASS]
    if n >= MIN_SPLIT and not thin:
        return None
    what = f"{n} image{'s' if n != 1 else ''}" + (f" (class {', '.join(thin)})" if thin else "")
    return (f"the {split} split has {what}: too few to {PURPOSE[split]} (one image moves a score by "
            f"{100 / max(n, 1):.0f} points); give it at least {MIN_SPLIT} images and {MIN_PER_CLASS} of each class "
            f"({split}_fraction=, or a {split}/ folder)")


def default_size(name: str) -> int:
    """The image size a folder dataset runs at when no size is given: its catalogue entry's (the built-in
    datasets' images are larger than the backbones' input: 224 px), else its images' own size, i.e. the median
    shorter side of up to 64 of them spread over the file list (headers only), at most 224 px and at least 8 px.
    A dataset that cannot be scanned here runs at 224 px; loading it reports what is wrong."""
    from PIL import Image

    spec = get_spec(name)
    if spec.default_size is not None:
        return spec.default_size
    key = (name, str(spec.root))
    if key not in _DEFAULT_SIZES:
        sides: list[int] = []
        try:
            paths = sorted((it.path for pool in scan(name).pools.values() for it in pool), key=str)
        except DataError:
            paths = []
        for path in paths[:: max(1, len(paths) // SIZE_SAMPLE)][:SIZE_SAMPLE]:
            with contextlib.suppress(Exception):  # an unreadable image is reported when the data load
                with Image.open(path) as im:
                    sides.append(min(im.size))
        size = sorted(sides)[len(sides) // 2] if sides else MAX_DEFAULT_SIZE
        _DEFAULT_SIZES[key] = min(MAX_DEFAULT_SIZE, max(8, size))
    return _DEFAULT_SIZES[key]


def default_size_note(name: str) -> str:
    """Which size :func:`default_size` chose for ``name`` and why, in words for the user."""
    why = ("the backbones' input size (its images are larger)" if get_spec(name).default_size is not None
           else f"its images' own size (at most {MAX_DEFAULT_SIZE})")
    return f"{name} at {default_size(name)} px: {why}; --img-size sets another"


def load_folder_dataset(name: str, size: int, root: str | os.PathLike[str] | None = None) -> DataBundle:
    """Load folder dataset ``name`` with images resized to ``size`` x ``size`` (decoded once, then cached)."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise DataError(f"folder dataset {name}: image size must be an integer of at least 8 px, not {size!r}")
    size = int(size)
    found = scan(name, root)
    spec, classes = found.spec, found.classes
    task = spec.task
    if spec.infer_task:  # user data registered without task or classes
        task = "binary-class" if len(classes) == 2 else "multi-class"
    elif task == "binary-class" and len(classes) != 2:
        raise DataError(f"{found.base}: a binary-class dataset needs 2 classes, found {list(classes)}")
    fp = fingerprint(found)
    cache, meta = decoded_cache(found, size, fp)
    splits, conversion_s = open_npz(cache, task=task, n_labels=len(classes), n_channels=spec.channels, size=size,
                                    key=f"{fp}:{meta['content_md5']}")
    for split in ("val", "test"):
        if (why := small_split(split, splits[split].labels.numpy(), task, classes)) is not None:
            warnings.warn(f"{name}: {why}", UserWarning, stacklevel=2)
    label_names = {str(i): spec.label_names.get(c, c) for i, c in enumerate(classes)}
    identity = {
        "source": "folder",
        "dataset": name,
        "root": str(found.base),
        "layout": spec.layout,
        "files": found.n_files,
        "fingerprint": fp,
        "file": str(cache),
        "md5": meta["content_md5"],  # of the decoded arrays and file lists, stable across machines
        "md5_verified": False,
        "synthetic": False,
        "source_size": size,
        "classes": list(classes),
        "resize": f"PIL bicubic{', centre crop to square' if spec.crop == 'center' else ''}",
        "loader_version": LOADER_VERSION,
        **found.notes,
    }
    if spec.url:
        identity["url"] = spec.url
    return DataBundle(
        name=name,
        task=task,
        n_classes=len(classes),
        n_channels=spec.channels,
        modality=spec.modality,
        label_names=label_names,
        identity=identity,
        conversion_s=conversion_s,
        **splits,
    )
