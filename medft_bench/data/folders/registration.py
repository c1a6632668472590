"""The folder datasets by name: the built-in catalogue and the user's own, registered in code or by
``--folder-dataset NAME=PATH[,key=value...]``."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medft_bench.data import medmnist as mm
from medft_bench.data.folders.catalogue import BUILTIN
from medft_bench.data.folders.spec import FolderDatasetSpec
from medft_bench.errors import DataError, DatasetNotFoundError, unknown
from medft_bench.vocabulary import MODALITY_WORDS

# Split folder names recognised for user-registered datasets (first match wins).
USER_SPLIT_DIRS = {
    "train": ("train", "training", "Train", "Training"),
    "val": ("val", "valid", "validation", "Val", "Validation"),
    "test": ("test", "testing", "Test", "Testing"),
}
_USER: dict[str, FolderDatasetSpec] = {}


def registry() -> dict[str, FolderDatasetSpec]:
    """Every folder dataset: the built-in ones and those registered with :func:`register_folder_dataset`."""
    return {**BUILTIN, **_USER}


def is_user_dataset(name: str) -> bool:
    """Whether ``name`` is the user's own dataset (registered in code or by ``--folder-dataset``)."""
    return name in _USER


def infer_modality(*texts: str) -> str:
    """The modality the words of ``texts`` (a dataset's name, its path) name, when exactly one does; else ""."""
    words = {w for t in texts for w in re.split(r"[^a-z0-9]+", t.lower().replace("-", "")) if w}  # x-ray: xray
    # a short word must stand alone ("us", "ct"); a longer one may sit inside a word ("chestxray", "isic2019")
    found = [m for m, keys in MODALITY_WORDS.items() if any(w == k or (len(k) >= 4 and k in w)
                                                             for w in words for k in keys)]
    return found[0] if len(found) == 1 else ""


def get_spec(name: str) -> FolderDatasetSpec:
    """The folder dataset ``name``, or :class:`UnknownDatasetError` listing the known names."""
    specs = registry()
    if name not in specs:
        raise mm.UnknownDatasetError(*unknown("folder dataset", name, list(specs)).args)
    return specs[name]


def register_folder_dataset(
    name: str,
    root: str | os.PathLike[str],
    layout: str = "folders",
    classes: Sequence[str] | None = None,
    task: str | None = None,
    modality: str = "",
    *,
    channels: int = 3,
    manifest: str = "manifest.csv",
    crop: str = "none",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    label_names: dict[str, str] | None = None,
    title: str = "",
) -> FolderDatasetSpec:
    """Register the user's own dataset at ``root`` under ``name`` (re-registering a user name replaces it).

    ``layout="folders"``: ``root/{train,val,test}/<class>/*`` (val and test optional, carved when missing) or
    ``root/<class>/*``. ``layout="csv"``: ``root/<manifest>`` with columns ``path,label[,split][,group]``, paths
    relative to ``root``. ``classes`` fixes the label order (and may pick a subset of the class folders); by
    default it is the sorted class folders or labels. ``task`` defaults to binary-class for two classes, else
    multi-class.
    """
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in folder dataset; register yours under another name")
    if name in mm.flags():
        raise ValueError(f"{name!r} is a MedMNIST flag; register your dataset under another name")
    classes_t = tuple(str(c) for c in classes) if classes is not None else None
    infer_task = task is None and classes_t is None
    if task is None:
        task = "binary-class" if classes_t is not None and len(classes_t) == 2 else "multi-class"
    spec = FolderDatasetSpec(
        name=name,
        title=title or f"user dataset {name}",
        modality=modality,
        task=task,
        classes=classes_t,
        channels=channels,
        layout=layout,
        split_dirs=USER_SPLIT_DIRS if layout == "folders" else None,
        optional_splits=("val", "test"),
        flat_fallback=True,
        ignore_other_folders=classes_t is not None,
        manifest=manifest,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        crop=crop,
        label_names=dict(label_names or {}),
        infer_task=infer_task,
        root=Path(root).expanduser(),
    )
    _USER[name] = spec
    return spec


_OPTION_KEYS = {"layout": str, "modality": str, "task": str, "channels": int, "crop": str, "manifest": str,
                "val_fraction": float, "test_fraction": float, "title": str}


def register_from_option(text: str) -> FolderDatasetSpec:
    """Register a dataset from ``NAME=PATH[,key=value...]`` (the ``--folder-dataset`` option).

    PATH is a class-folder tree, a folder holding ``manifest.csv``, or a CSV manifest file itself; the layout
    follows from what PATH is unless ``layout=`` says. PATH cannot contain a comma (it separates the items).
    Keys: ``classes=a|b|c`` and those of :func:`register_folder_dataset` (``channels=1``,
    ``modality=ultrasound``, ``task=binary-class``, ...).
    """
    usage = ("expected NAME=PATH[,key=value...], e.g. mine=/data/ultrasound,channels=1,modality=ultrasound "
             f"(keys: classes=a|b, {', '.join(_OPTION_KEYS)})")
    name, sep, rest = text.partition("=")
    parts = rest.split(",")
    if not sep or not name.strip() or not parts[0].strip():
        raise DataError(f"--folder-dataset {text!r}: {usage}")
    path = Path(parts[0].strip()).expanduser()
    kwargs: dict[str, Any] = {}
    for part in parts[1:]:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or (key not in _OPTION_KEYS and key != "classes"):
            raise DataError(f"--folder-dataset {text!r}: bad item {part!r}; {usage}")
        try:
            if key == "classes":
                kwargs[key] = [c.strip() for c in value.split("|")]
            else:
                kwargs[key] = _OPTION_KEYS[key](value.strip())
        except ValueError:
            raise DataError(f"--folder-dataset {text!r}: {key}={value!r} is not a valid "
                            f"{_OPTION_KEYS[key].__name__}") from None
    if not path.exists():
        raise DatasetNotFoundError(f"--folder-dataset {text!r}: {path} does not exist; give the folder of class "
                                   "sub-folders, or a CSV manifest with columns path,label[,split][,group]")
    if path.is_file():
        if kwargs.get("layout", "csv") != "csv":
            raise DataError(f"--folder-dataset {text!r}: {path} is a file, so the layout is csv (a manifest); "
                            "for layout=folders give the folder of class sub-folders")
        kwargs.setdefault("layout", "csv")
        kwargs.setdefault("manifest", path.name)
        path = path.parent
    elif (path / kwargs.get("manifest", "manifest.csv")).is_file():
        kwargs.setdefault("layout", "csv")
    if not kwargs.get("modality"):
        kwargs["modality"] = _modality_for(name.strip(), path)
    try:
        return register_folder_dataset(name.strip(), path, **kwargs)
    except ValueError as exc:
        raise DataError(f"--folder-dataset {text!r}: {exc}") from None


def _modality_for(name: str, path: Path) -> str:
    """The modality inferred from ``name`` and ``path`` when ``modality=`` was not given, said in a warning either
    way: records, the leaderboard's answer and its groups are by modality, and "unknown" answers nobody."""
    inferred = infer_modality(name, *path.parts[-3:])
    if inferred:
        warnings.warn(f"--folder-dataset {name}: no modality= given; inferred {inferred!r} from its name and path "
                      f"(records and the leaderboard show it; add modality=... to set another)", UserWarning,
                      stacklevel=3)
    else:
        warnings.warn(f"--folder-dataset {name}: no modality= given and none inferred from its name or path: its "
                      "records and the leaderboard will say 'unknown'; add e.g. modality=ultrasound", UserWarning,
                      stacklevel=3)
    return inferred
