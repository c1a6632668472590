"""Full-size datasets for the heavy tier, read from image folders or a CSV manifest.

Two generic layouts cover the registered datasets and users' own data:

* ``folders``: split folders holding one folder per class (``<root>/train/<class>/*.png``, ``<root>/test/...``,
  optionally ``<root>/val/...``), or class folders directly under the root when there are no splits.
* ``csv``: a manifest with a path column, a label column and optionally a split column (and a group column,
  so that images of one patient or lesion never straddle splits).

A split that is not on disk is carved deterministically and stratified by class: val from train (10% by
default), and test from everything (20%) when there is no test split. Carving orders the images (or groups)
of each class by a hash of their names, so it does not depend on the file system's listing order.

Every image is decoded once with PIL (converted to grey or RGB, optionally centre-cropped to a square, resized
with bicubic filtering to the requested size) and the uint8 arrays are cached as a MedMNIST-format npz under
``cache_dir()/folders/``, keyed by dataset name, size and a fingerprint of the file list (names, sizes, mtimes,
labels, splits) and of the loading settings. Later loads read the cache; any change to the files rebuilds it.
A large cache's images are then converted once into memory-mappable arrays next to it
(:mod:`medft_bench.data.mapped`), removed with the cache they came from.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medft_bench.data import mapped
from medft_bench.data.arrays import SPLITS, DataBundle, open_npz
from medft_bench.errors import DataError, DatasetNotFoundError
from medft_bench.io import atomic_path

log = logging.getLogger(__name__)

LOADER_VERSION = 1
ROOT_ENV = "MEDFT_DATA_ROOT"
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm"})
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
# Split folder names recognised for user-registered datasets (first match wins).
USER_SPLIT_DIRS = {
    "train": ("train", "training", "Train", "Training"),
    "val": ("val", "valid", "validation", "Val", "Validation"),
    "test": ("test", "testing", "Test", "Testing"),
}
TASKS = ("binary-class", "multi-class")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class FolderDatasetSpec:
    """What a folder dataset is, how it is laid out on disk, and where to get it."""

    name: str
    title: str
    modality: str
    task: str
    classes: tuple[str, ...] | None  # folder names / manifest labels in label order; None: inferred (user data)
    channels: int  # 1: decoded as grey ("L"), 3: as RGB
    layout: str  # "folders" or "csv"
    # folders layout: split -> accepted folder names; None: class folders directly under the root.
    split_dirs: dict[str, tuple[str, ...]] | None = None
    merge_val_into_train: bool = False  # a val folder too small to use: merged into train, val carved instead
    # csv layout
    manifest: str = "manifest.csv"
    path_column: str = "path"
    label_column: str = "label"
    split_column: str | None = "split"  # used when the manifest has it
    group_column: str | None = None  # rows sharing a group go to the same split
    find_by_stem: bool = False  # the path column holds image ids, found by file stem anywhere under the root
    # splitting and decoding
    val_fraction: float = 0.1  # of the train pool, when there is no val split
    test_fraction: float = 0.2  # of everything, when there is no test split
    crop: str = "none"  # "center": crop to the short side's square before resizing; "none": squash
    label_names: dict[str, str] = field(default_factory=dict)  # class -> readable name
    # where to get it
    url: str = ""
    citation: str = ""
    licence: str = ""
    instructions: str = ""
    root: Path | None = None  # fixed location (user-registered datasets)
    builtin: bool = True
    infer_task: bool = False  # binary-class for two inferred classes, else multi-class (user data)

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"folder dataset name {self.name!r}: use letters, digits, '_', '-' and '.'")
        if self.layout not in ("folders", "csv"):
            raise ValueError(f"{self.name}: unknown layout {self.layout!r}; use 'folders' or 'csv'")
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task {self.task!r} is not supported for folder datasets; use {TASKS}")
        if self.channels not in (1, 3):
            raise ValueError(f"{self.name}: channels must be 1 or 3, not {self.channels}")
        if self.crop not in ("none", "center"):
            raise ValueError(f"{self.name}: crop must be 'none' or 'center', not {self.crop!r}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1):
            raise ValueError(f"{self.name}: val_fraction and test_fraction must lie strictly between 0 and 1")
        if self.classes is not None:
            if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
                raise ValueError(f"{self.name}: classes must be at least two distinct names, got {self.classes}")
            if self.task == "binary-class" and len(self.classes) != 2:
                raise ValueError(f"{self.name}: a binary-class task needs exactly 2 classes, got {len(self.classes)}")

    def layout_text(self, where: str = "<root>") -> str:
        """The expected layout, in one line."""
        classes = "{" + ",".join(self.classes) + "}" if self.classes else "<class>"
        if self.layout == "csv":
            cols = [self.path_column, self.label_column]
            cols += [c for c in (self.split_column, self.group_column) if c]
            where_images = (f"image files named <{self.path_column}>.<ext> anywhere under {where}"
                            if self.find_by_stem else f"image paths in '{self.path_column}' relative to {where}")
            return (f"{where}/{self.manifest} with columns {','.join(cols)} ({self.label_column} in {classes}"
                    f"{'; ' + self.split_column + ' optional, in train/val/test' if self.split_column else ''}); "
                    f"{where_images}")
        if self.split_dirs is None:
            return f"{where}/{classes}/*.<png|jpg|tif>"
        parts = []
        for split, names in self.split_dirs.items():
            optional = " (optional)" if split != "train" and split not in self.required_splits() else ""
            parts.append(f"{where}/{names[0]}/{classes}/*.<png|jpg|tif>{optional}")
        if not self.builtin:
            parts.append(f"or, without split folders, {where}/{classes}/*.<png|jpg|tif>")
        return "; ".join(parts)

    def required_splits(self) -> tuple[str, ...]:
        if self.split_dirs is None:
            return ()
        return tuple(s for s in self.split_dirs if s != "val") if self.builtin else ("train",)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["root"] = str(self.root) if self.root else None
        return d


def _builtin_specs() -> list[FolderDatasetSpec]:
    return [
        FolderDatasetSpec(
            name="chest_xray_pneumonia",
            title="Chest X-Ray Images (Pneumonia), paediatric chest radiographs",
            modality="x-ray",
            task="binary-class",
            classes=("NORMAL", "PNEUMONIA"),
            channels=1,
            layout="folders",
            split_dirs={"train": ("train",), "val": ("val",), "test": ("test",)},
            merge_val_into_train=True,
            crop="center",
            label_names={"NORMAL": "normal", "PNEUMONIA": "pneumonia"},
            url="https://data.mendeley.com/datasets/rscbjbr9sj/2 (ChestXRay2017.zip; Kaggle mirror: "
                "paultimothymooney/chest-xray-pneumonia)",
            citation="Kermany et al., Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep "
                     "Learning, Cell 172(5):1122-1131, 2018",
            licence="CC BY 4.0",
            instructions="unzip ChestXRay2017.zip and move the contents of chest_xray/ (train/, test/ and, in "
                         "the Kaggle copy, val/) into the dataset folder. The Kaggle val/ folder holds only 16 "
                         "images: it is merged into train and a stratified 10% val split is carved instead.",
        ),
        FolderDatasetSpec(
            name="brain_tumor_mri",
            title="Brain Tumor MRI (4 classes: glioma, meningioma, pituitary, no tumour)",
            modality="mri",
            task="multi-class",
            classes=("glioma", "meningioma", "notumor", "pituitary"),
            channels=1,
            layout="folders",
            split_dirs={"train": ("Training",), "test": ("Testing",)},
            crop="center",
            label_names={"glioma": "glioma", "meningioma": "meningioma", "notumor": "no tumour",
                         "pituitary": "pituitary tumour"},
            url="https://www.kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset",
            citation="M. Nickparvar, Brain Tumor MRI Dataset, Kaggle 2021 (combining figshare: Cheng et al., "
                     "PLoS ONE 10(10):e0140253, 2015 / 2017 release, SARTAJ and Br35H)",
            licence="CC0 1.0 as listed on Kaggle; the figshare source is CC BY 4.0: check each source's terms",
            instructions="unzip the Kaggle archive so that Training/ and Testing/ (each with glioma/, meningioma/, "
                         "notumor/, pituitary/) sit in the dataset folder. There is no val split: 10% of "
                         "Training is carved, stratified by class.",
        ),
        FolderDatasetSpec(
            name="nct_crc_he",
            title="NCT-CRC-HE-100K (train) and CRC-VAL-HE-7K (test), colorectal histology patches",
            modality="histology",
            task="multi-class",
            classes=("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"),
            channels=3,
            layout="folders",
            split_dirs={"train": ("NCT-CRC-HE-100K", "NCT-CRC-HE-100K-NONORM"), "test": ("CRC-VAL-HE-7K",)},
            label_names={"ADI": "adipose", "BACK": "background", "DEB": "debris", "LYM": "lymphocytes",
                         "MUC": "mucus", "MUS": "smooth muscle", "NORM": "normal colon mucosa",
                         "STR": "cancer-associated stroma", "TUM": "colorectal adenocarcinoma epithelium"},
            url="https://zenodo.org/records/1214456 (NCT-CRC-HE-100K.zip, CRC-VAL-HE-7K.zip)",
            citation="Kather et al., Predicting survival from colorectal cancer histology slides using deep "
                     "learning: a retrospective multicenter study, PLOS Medicine 16(1):e1002730, 2019",
            licence="CC BY 4.0",
            instructions="unzip both archives into the dataset folder (giving NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/, "
                         "each with the nine class folders of 224 px .tif patches). As in PathMNIST, 10% of the "
                         "training set is carved as val. Decoding 100,000 patches takes a while once; at 224 px "
                         "the cache holds about 15 GB.",
        ),
        FolderDatasetSpec(
            name="ham10000",
            title="HAM10000 dermoscopic images of pigmented skin lesions",
            modality="dermoscopy",
            task="multi-class",
            classes=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"),
            channels=3,
            layout="csv",
            manifest="HAM10000_metadata.csv",
            path_column="image_id",
            label_column="dx",
            split_column=None,
            group_column="lesion_id",
            find_by_stem=True,
            val_fraction=0.125,  # 7:1:2 overall, as DermaMNIST
            test_fraction=0.2,
            label_names={"akiec": "actinic keratoses and intraepithelial carcinoma", "bcc": "basal cell carcinoma",
                         "bkl": "benign keratosis-like lesions", "df": "dermatofibroma", "mel": "melanoma",
                         "nv": "melanocytic nevi", "vasc": "vascular lesions"},
            url="https://doi.org/10.7910/DVN/DBW86T (Harvard Dataverse: HAM10000_images_part_1.zip, "
                "HAM10000_images_part_2.zip, HAM10000_metadata.csv)",
            citation="Tschandl, Rosendahl and Kittler, The HAM10000 dataset, a large collection of multi-source "
                     "dermatoscopic images of common pigmented skin lesions, Scientific Data 5:180161, 2018",
            licence="CC BY-NC 4.0 (non-commercial)",
            instructions="put HAM10000_metadata.csv in the dataset folder and unzip both image archives into it "
                         "(any sub-folders: images are found by image_id). Splits 7:1:2 are carved stratified by "
                         "diagnosis and grouped by lesion_id, so that images of one lesion stay in one split.",
        ),
        FolderDatasetSpec(
            name="kvasir_v2",
            title="Kvasir v2, gastrointestinal endoscopy",
            modality="endoscopy",
            task="multi-class",
            classes=("dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum",
                     "normal-pylorus", "normal-z-line", "polyps", "ulcerative-colitis"),
            channels=3,
            layout="folders",
            split_dirs=None,
            label_names={"dyed-lifted-polyps": "dyed lifted polyps", "dyed-resection-margins": "dyed resection margins",
                         "esophagitis": "esophagitis", "normal-cecum": "normal cecum",
                         "normal-pylorus": "normal pylorus", "normal-z-line": "normal Z-line", "polyps": "polyps",
                         "ulcerative-colitis": "ulcerative colitis"},
            url="https://datasets.simula.no/kvasir/ (kvasir-dataset-v2.zip)",
            citation="Pogorelov et al., KVASIR: A Multi-Class Image Dataset for Computer Aided Gastrointestinal "
                     "Disease Detection, ACM MMSys 2017, pp. 164-169",
            licence="free for research and education with citation; no commercial use without permission",
            instructions="unzip kvasir-dataset-v2.zip and move the eight class folders into the dataset folder "
                         "(or leave them inside kvasir-dataset-v2/). There are no official splits: 20% test, "
                         "then 10% of the rest as val, are carved stratified by class.",
        ),
    ]


_BUILTIN: dict[str, FolderDatasetSpec] = {s.name: s for s in _builtin_specs()}
_USER: dict[str, FolderDatasetSpec] = {}


def registry() -> dict[str, FolderDatasetSpec]:
    """Every folder dataset: the built-in ones and those registered with :func:`register_folder_dataset`."""
    return {**_BUILTIN, **_USER}


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
    relative to ``root``. ``classes`` fixes the label order; by default it is the sorted class folders or labels.
    ``task`` defaults to binary-class for two classes, else multi-class.
    """
    from medft_bench.data import medmnist as mm

    if name in _BUILTIN:
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
        manifest=manifest,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        crop=crop,
        label_names=dict(label_names or {}),
        url=f"your own data, registered at {Path(root).expanduser()}",
        root=Path(root).expanduser(),
        builtin=False,
        infer_task=infer_task,
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
    try:
        return register_folder_dataset(name.strip(), path, **kwargs)
    except ValueError as exc:
        raise DataError(f"--folder-dataset {text!r}: {exc}") from None


def unregister_folder_dataset(name: str) -> None:
    """Forget a user-registered dataset (a no-op for unknown names)."""
    _USER.pop(name, None)


# ------------------------------------------------------------------------------------------ locating


def _visible_dirs(path: Path) -> list[Path]:
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not _ignored(p.name))
    except OSError:
        return []


def _ignored(name: str) -> bool:
    return name.startswith(".") or name in IGNORED_NAMES


def _looks_like(spec: FolderDatasetSpec, path: Path) -> bool:
    if not path.is_dir():
        return False
    if spec.layout == "csv":
        return (path / spec.manifest).is_file()
    if spec.split_dirs is not None:
        if any((path / n).is_dir() for names in spec.split_dirs.values() for n in names):
            return True
        if spec.builtin:
            return False
    if spec.classes is None:
        return bool(_visible_dirs(path))
    return any((path / c).is_dir() for c in spec.classes)


def _unwrap(spec: FolderDatasetSpec, path: Path) -> Path | None:
    """``path`` or the folder an archive unpacked into (one lone sub-folder, two levels at most)."""
    for _ in range(3):
        if _looks_like(spec, path):
            return path
        subdirs = _visible_dirs(path)
        if len(subdirs) != 1:
            return None
        path = subdirs[0]
    return None


def candidate_roots(spec: FolderDatasetSpec, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where ``spec`` is looked for, in order.

    A user-registered dataset lives where it was registered. A built-in one lives in ``<root>/<name>`` or in
    ``root`` itself when ``root`` is given (a data root holding several datasets, or the dataset's own folder),
    else in ``$MEDFT_DATA_ROOT/<name>``.
    """
    if spec.root is not None:
        return [spec.root]
    if root is not None:
        r = Path(root).expanduser()
        return [r / spec.name, r]
    if os.environ.get(ROOT_ENV):
        return [Path(os.environ[ROOT_ENV]).expanduser() / spec.name]
    return []


def _not_found(spec: FolderDatasetSpec, candidates: list[Path]) -> DatasetNotFoundError:
    where = str(candidates[0]) if candidates else f"${ROOT_ENV}/{spec.name}"
    if candidates:
        looked = " or ".join(str(c) for c in candidates)
        head = f"Folder dataset {spec.name!r} ({spec.title}) was not found at {looked}."
    else:
        head = (f"Folder dataset {spec.name!r} ({spec.title}) has no location: pass --data-root (a folder "
                f"holding {spec.name}/) or set ${ROOT_ENV}.")
    get = f" Get it from {spec.url}" if spec.url else ""
    cite = f" (cite: {spec.citation}; licence: {spec.licence})" if spec.citation else ""
    todo = f" To install: {spec.instructions}" if spec.instructions and spec.builtin else ""
    return DatasetNotFoundError(
        f"{head}{get}{cite}.{todo} Expected layout: {spec.layout_text(where)}. Place it at {where}."
    )


def locate(spec: FolderDatasetSpec, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds ``spec``'s files, or :class:`DatasetNotFoundError` with instructions."""
    candidates = candidate_roots(spec, root)
    for c in candidates:
        found = _unwrap(spec, c)
        if found is not None:
            return found
    raise _not_found(spec, candidates)


# ------------------------------------------------------------------------------------------ scanning


@dataclass
class _Item:
    path: Path
    label: str
    split: str | None  # None: to be carved
    group: str


def _image_files(folder: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _ignored(d))
        for f in sorted(filenames):
            if not _ignored(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS:
                files.append(Path(dirpath) / f)
    return files


def _class_items(base: Path, folder: Path, classes: Sequence[str], split: str | None,
                 check_extra: bool) -> list[_Item]:
    found = [d.name for d in _visible_dirs(folder)]
    if check_extra:
        extra = sorted(set(found) - set(classes))
        if extra:
            raise DataError(
                f"{folder}: unexpected folder(s) {extra}, not among the classes {list(classes)} "
                "(a misnamed class folder?)"
            )
    items: list[_Item] = []
    for cls in classes:
        d = folder / cls
        if not d.is_dir():
            raise DataError(f"{folder}: class folder {cls!r} missing (found {found}); expected one folder per "
                            f"class: {list(classes)}")
        files = _image_files(d)
        if not files:
            raise DataError(f"{d}: no images in the class folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        items += [_Item(f, cls, split, f.relative_to(base).as_posix()) for f in files]
    return items


def _strict(spec: FolderDatasetSpec) -> bool:
    """Whether folders other than the classes are an error: for the registered layouts (a misnamed class folder)
    and for inferred classes (every split must use train's folder names). A user's explicit ``classes`` may pick
    a subset of the folders."""
    return spec.builtin or spec.classes is None


def _find_split_dir(base: Path, names: Iterable[str]) -> Path | None:
    for n in names:
        if (base / n).is_dir():
            return base / n
    return None


def _scan_folders(spec: FolderDatasetSpec, base: Path) -> tuple[list[_Item], tuple[str, ...], dict[str, Any]]:
    notes: dict[str, Any] = {}
    if spec.split_dirs is not None:
        dirs = {s: _find_split_dir(base, names) for s, names in spec.split_dirs.items()}
        if not spec.builtin and not any(dirs.values()):
            dirs = {}  # no split folders: class folders directly under the root
        else:
            for s in spec.required_splits():
                if dirs.get(s) is None:
                    raise DataError(
                        f"{base}: split folder {spec.split_dirs[s][0]!r} missing (found "
                        f"{[d.name for d in _visible_dirs(base)]}); expected layout: {spec.layout_text(str(base))}"
                    )
    else:
        dirs = {}
    dirs = {s: d for s, d in dirs.items() if d is not None}
    if not dirs:
        classes = spec.classes or tuple(d.name for d in _visible_dirs(base))
        if len(classes) < 2:
            raise DataError(f"{base}: found {len(classes)} class folder(s) {list(classes)}; need at least 2")
        return _class_items(base, base, classes, None, _strict(spec)), classes, notes
    classes = spec.classes or tuple(d.name for d in _visible_dirs(dirs["train"]))
    if len(classes) < 2:
        raise DataError(f"{dirs['train']}: found {len(classes)} class folder(s) {list(classes)}; need at least 2")
    notes["split_dirs"] = {s: d.name for s, d in dirs.items()}
    items: list[_Item] = []
    for s, d in dirs.items():
        split: str | None = s
        if s == "val" and spec.merge_val_into_train:
            split = None  # merged into the train pool below
            notes["val_dir_merged_into_train"] = True
        items += _class_items(base, d, classes, split, _strict(spec))
    for it in items:
        if it.split is None:
            it.split = "train"
    return items, classes, notes


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = [c.strip() for c in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the manifest ({type(exc).__name__}: {exc})") from None
    rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in rows]
    return columns, rows


def _scan_csv(spec: FolderDatasetSpec, base: Path) -> tuple[list[_Item], tuple[str, ...], dict[str, Any]]:
    manifest = base / spec.manifest
    columns, rows = _read_manifest(manifest)
    for col in (spec.path_column, spec.label_column):
        if col not in columns:
            raise DataError(f"{manifest}: no {col!r} column; the columns are {columns} "
                            f"(expected layout: {spec.layout_text(str(base))})")
    if not rows:
        raise DataError(f"{manifest}: the manifest has no rows")
    split_col = spec.split_column if spec.split_column in columns else None
    group_col = spec.group_column if spec.group_column in columns else None
    labels_seen = sorted({r[spec.label_column] for r in rows if r[spec.label_column]})
    classes = spec.classes or tuple(labels_seen)
    known = set(classes)
    by_stem: dict[str, Path] = {}
    if spec.find_by_stem:
        for f in _image_files(base):
            by_stem.setdefault(f.stem, f)
    items: list[_Item] = []
    seen: dict[Path, int] = {}
    for i, r in enumerate(rows, start=1):
        row = f"manifest row {i} (line {i + 1})"
        where = f"{manifest}: {row}"
        ref, label = r.get(spec.path_column, ""), r.get(spec.label_column, "")
        if not ref:
            raise DataError(f"{where}: empty {spec.path_column!r}")
        if label not in known:
            raise DataError(f"{manifest}: unknown label {label!r} in {row}; known labels: {list(classes)}")
        if spec.find_by_stem:
            path = by_stem.get(Path(ref).stem)
            if path is None:
                raise DataError(f"{where}: no image file for {spec.path_column} {ref!r} under {base}")
        else:
            # Normalised first: a manifest row may not name a file outside the dataset's root ("..", an
            # absolute path). Links placed inside the root by its owner are followed like any folder.
            rel = os.path.normpath(ref)
            if os.path.isabs(rel) or rel == os.pardir or rel.startswith(os.pardir + os.sep):
                raise DataError(f"{where}: {spec.path_column!r} {ref!r} points outside the dataset root {base}; "
                                f"give paths relative to {base} that stay inside it")
            path = base / rel
            if not path.is_file():
                raise DataError(f"{where}: image file {ref!r} not found (looked for {path})")
        if path in seen:
            raise DataError(f"{where}: {ref!r} is listed twice (first in row {seen[path]})")
        seen[path] = i
        split = None
        if split_col is not None and r.get(split_col, ""):
            split = {"train": "train", "val": "val", "valid": "val", "validation": "val",
                     "test": "test"}.get(r[split_col].lower())
            if split is None:
                raise DataError(f"{where}: unknown split {r[split_col]!r}; use train, val or test (or leave it empty)")
        group = r.get(group_col, "") if group_col else ""
        items.append(_Item(path, label, split, f"group:{group}" if group else path.relative_to(base).as_posix()))
    if split_col is not None and any(it.split is None for it in items) and any(it.split for it in items):
        # Partly assigned: rows without a split join train.
        for it in items:
            if it.split is None:
                it.split = "train"
    return items, classes, {"manifest": spec.manifest}


# ------------------------------------------------------------------------------------------ splitting


def _rank(name: str, key: str) -> str:
    return hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()


def _carve(items: list[_Item], fraction: float, dataset: str, purpose: str) -> tuple[list[_Item], list[_Item]]:
    """Split ``items`` into (kept, carved): ``fraction`` of each class's groups, chosen by hash order."""
    groups: dict[str, list[_Item]] = {}
    for it in items:
        groups.setdefault(it.group, []).append(it)
    by_class: dict[str, list[str]] = {}
    for g, members in groups.items():
        by_class.setdefault(members[0].label, []).append(g)
    carved_groups: set[str] = set()
    for _cls, gs in sorted(by_class.items()):
        gs.sort(key=lambda g: _rank(dataset + purpose, g))
        n = int(round(fraction * len(gs)))
        if len(gs) >= 2:
            n = min(max(n, 1), len(gs) - 1)  # at least one each side when the class allows it
        else:
            n = 0
        carved_groups.update(gs[:n])
    kept = [it for it in items if it.group not in carved_groups]
    carved = [it for it in items if it.group in carved_groups]
    return kept, carved


def _assign_splits(spec: FolderDatasetSpec, items: list[_Item], base: Path) -> tuple[dict[str, list[_Item]], dict]:
    notes: dict[str, Any] = {}
    pools = {s: [it for it in items if it.split == s] for s in SPLITS}
    unassigned = [it for it in items if it.split is None]
    if not pools["test"]:
        rest, pools["test"] = _carve(unassigned + pools["train"], spec.test_fraction, spec.name, "test")
        pools["train"], unassigned = rest, []
        notes["test_carved"] = spec.test_fraction
    pools["train"] += unassigned
    if not pools["val"]:
        pools["train"], pools["val"] = _carve(pools["train"], spec.val_fraction, spec.name, "val")
        notes["val_carved"] = spec.val_fraction
    for s in SPLITS:
        if not pools[s]:
            raise DataError(f"{base}: the {s} split is empty ({len(items)} images in all: too few to carve it)")
        pools[s].sort(key=lambda it: it.path.relative_to(base).as_posix())
    groups = {s: {it.group for it in pools[s]} for s in SPLITS}
    if groups["train"] & groups["test"] or groups["train"] & groups["val"] or groups["val"] & groups["test"]:
        shared = sorted((groups["train"] & groups["test"]) | (groups["train"] & groups["val"]))[:3]
        raise DataError(f"{base}: group(s) {shared} appear in more than one split; a group must stay in one split")
    return pools, notes


# ------------------------------------------------------------------------------------------ decoding


def _decode_image(path: Path, size: int, channels: int, crop: str) -> np.ndarray:
    """One image as uint8 (size, size) or (size, size, 3)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG":
            im.draft("L" if channels == 1 else "RGB", (size, size))  # decode at a reduced scale when possible
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            arr = np.asarray(im, dtype=np.float64)  # high bit depth: scale its own range to 0..255
            if arr.ndim == 3:
                arr = arr.mean(-1)
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
            img = Image.fromarray(arr.round().astype(np.uint8))
        else:
            img = im.convert("RGBA").convert("RGB") if im.mode in ("P", "PA", "LA") else im
        img = img.convert("L" if channels == 1 else "RGB")
        if crop == "center":
            w, h = img.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)
        return np.asarray(img, dtype=np.uint8)


def _decode_checked(path: Path, size: int, channels: int, crop: str) -> np.ndarray:
    try:
        arr = _decode_image(path, size, channels, crop)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad file
        raise DataError(f"{path}: cannot read the image ({type(exc).__name__}: {exc})") from None
    want = (size, size) if channels == 1 else (size, size, 3)
    if arr.shape != want or arr.dtype != np.uint8:
        raise DataError(f"{path}: decoded to {arr.dtype} {arr.shape}, expected uint8 {want}")
    return arr


def _decode_all(paths: list[Path], size: int, channels: int, crop: str) -> np.ndarray:
    shape = (len(paths), size, size) if channels == 1 else (len(paths), size, size, 3)
    out = np.empty(shape, dtype=np.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))

    def one(i: int) -> None:
        out[i] = _decode_checked(paths[i], size, channels, crop)

    if workers == 1 or len(paths) < 64:
        for i in range(len(paths)):
            one(i)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, range(len(paths))))
    return out


# ------------------------------------------------------------------------------------------ caching


def cache_root() -> Path:
    from medft_bench.cache import cache_dir

    return cache_dir() / "folders"


def _fingerprint(spec: FolderDatasetSpec, base: Path, classes: Sequence[str], pools: dict[str, list[_Item]]) -> str:
    h = hashlib.sha256()
    settings = {"loader": LOADER_VERSION, "classes": list(classes), "channels": spec.channels, "crop": spec.crop,
                "task": spec.task}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for s in SPLITS:
        for it in pools[s]:
            st = it.path.stat()
            rel = it.path.relative_to(base).as_posix()
            h.update(f"{s}\0{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{it.label}\n".encode())
    return h.hexdigest()


def _content_md5(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.md5()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}\0{a.dtype.str}\0{a.shape}\n".encode())
        h.update(a.tobytes() if a.dtype.kind == "U" else memoryview(a).cast("B"))
    return h.hexdigest()


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path, durable=False) as tmp:  # a decoded cache, fingerprinted by its name
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    prefix = path.name.rsplit("_", 1)[0]
    same = re.compile(re.escape(prefix) + r"_[0-9a-f]{20}\.npz")
    for stale in path.parent.glob(f"{prefix}_*.npz"):
        if stale != path and same.fullmatch(stale.name):  # an older cache of this dataset and size
            with contextlib.suppress(OSError):
                stale.unlink()
            mapped.remove_converted(stale)
    mapped.remove_converted(path)  # converted from the file this one replaces


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return json.loads(str(npz["meta"][()]))
    except Exception:  # noqa: BLE001 - an unreadable cache is rebuilt
        return None


# ------------------------------------------------------------------------------------------ loading


def get_spec(name: str) -> FolderDatasetSpec:
    specs = registry()
    if name not in specs:
        from medft_bench.data.medmnist import UnknownDatasetError
        from medft_bench.errors import unknown

        raise UnknownDatasetError(*unknown("folder dataset", name, list(specs)).args)
    return specs[name]


def scan(name: str, root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Locate and validate a folder dataset without decoding anything: its folder, classes and split sizes."""
    spec = get_spec(name)
    base = locate(spec, root)
    items, classes, notes = (_scan_csv if spec.layout == "csv" else _scan_folders)(spec, base)
    pools, split_notes = _assign_splits(spec, items, base)
    return {"spec": spec, "base": base, "classes": tuple(classes), "pools": pools, "notes": {**notes, **split_notes}}


MAX_DEFAULT_SIZE = 224  # the input size of the study's ImageNet backbones: larger images are reduced to it
SIZE_SAMPLE = 64
_DEFAULT_SIZES: dict[tuple[str, str], int] = {}


def default_size(name: str) -> int:
    """The image size a folder dataset runs at when no size is given: its images' own size, i.e. the median
    shorter side of up to 64 of them spread over the file list (headers only), at most 224 px (what the
    study's ImageNet backbones expect) and at least 8 px. A built-in dataset (its images are larger), or one
    that cannot be scanned here, runs at 224 px; loading it reports what is wrong."""
    from PIL import Image

    spec = get_spec(name)
    key = (name, str(spec.root))
    if key not in _DEFAULT_SIZES:
        sides: list[int] = []
        if spec.root is not None:
            try:
                paths = sorted((it.path for pool in scan(name)["pools"].values() for it in pool), key=str)
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
    why = ("the backbones' input size (its images are larger)" if get_spec(name).builtin
           else f"its images' own size (at most {MAX_DEFAULT_SIZE})")
    return f"{name} at {default_size(name)} px: {why}; --img-size sets another"


def fingerprint(name: str, root: str | os.PathLike[str] | None = None) -> str:
    """The dataset's fingerprint (file list with sizes and mtimes, labels, splits, loading settings), without
    decoding anything: what its records' reuse is keyed on."""
    s = scan(name, root)
    return _fingerprint(s["spec"], s["base"], s["classes"], s["pools"])


def load_folder_dataset(name: str, size: int, root: str | os.PathLike[str] | None = None) -> DataBundle:
    """Load folder dataset ``name`` with images resized to ``size`` x ``size`` (decoded once, then cached)."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise DataError(f"folder dataset {name}: image size must be an integer of at least 8 px, not {size!r}")
    size = int(size)
    s = scan(name, root)
    spec, base, classes, pools, notes = s["spec"], s["base"], s["classes"], s["pools"], s["notes"]
    task = spec.task
    if spec.infer_task:  # user data registered without task or classes
        task = "binary-class" if len(classes) == 2 else "multi-class"
    elif task == "binary-class" and len(classes) != 2:
        raise DataError(f"{base}: a binary-class dataset needs 2 classes, found {list(classes)}")
    n_files = sum(len(p) for p in pools.values())
    fp = _fingerprint(spec, base, classes, pools)
    cache = cache_root() / f"{spec.name}_{size}px_{fp[:20]}.npz"
    meta = _read_meta(cache) if cache.is_file() else None
    if meta is None or meta.get("fingerprint") != fp:
        log.info("decoding %d images of %s at %d px into %s", n_files, name, size, cache)
        index = {c: i for i, c in enumerate(classes)}
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            items = pools[split]
            arrays[f"{split}_images"] = _decode_all([it.path for it in items], size, spec.channels, spec.crop)
            arrays[f"{split}_labels"] = np.array([[index[it.label]] for it in items], dtype=np.int64)
            arrays[f"{split}_files"] = np.array([it.path.relative_to(base).as_posix() for it in items])
        meta = {"fingerprint": fp, "dataset": name, "size": size, "classes": list(classes),
                "content_md5": _content_md5(arrays), "loader_version": LOADER_VERSION}
        arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
        _write_cache(cache, arrays)
    splits, conversion_s = open_npz(cache, task=task, n_labels=len(classes), n_channels=spec.channels, size=size,
                                    key=f"{fp}:{meta['content_md5']}")
    label_names = {str(i): spec.label_names.get(c, c) for i, c in enumerate(classes)}
    identity = {
        "source": "folder",
        "dataset": name,
        "root": str(base),
        "layout": spec.layout,
        "files": n_files,
        "fingerprint": fp,
        "file": str(cache),
        "md5": meta["content_md5"],  # of the decoded arrays and file lists, stable across machines
        "md5_verified": False,
        "synthetic": False,
        "source_size": size,
        "classes": list(classes),
        "resize": f"PIL bicubic{', centre crop to square' if spec.crop == 'center' else ''}",
        "loader_version": LOADER_VERSION,
        **notes,
    }
    if spec.builtin:
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

