"""What a folder dataset is: its classes, its layout on disk, how it is split and decoded, and where it comes from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

TASKS = ("binary-class", "multi-class")
BACKBONE_SIZE = 224  # the input size of the study's ImageNet backbones
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
    optional_splits: tuple[str, ...] = ("val",)  # split folders that may be missing (carved instead)
    flat_fallback: bool = False  # no split folder at all: class folders directly under the root are read
    ignore_other_folders: bool = False  # folders besides the classes are skipped, not an error (a chosen subset)
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
    default_size: int | None = None  # px when no size is given; None: the images' own size, read from their headers
    label_names: dict[str, str] = field(default_factory=dict)  # class -> readable name
    infer_task: bool = False  # binary-class for two inferred classes, else multi-class (user data)
    # where the files come from: a download (url, instructions, found under the data root) or a fixed folder
    url: str = ""
    citation: str = ""
    licence: str = ""
    instructions: str = ""
    root: Path | None = None

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

    @property
    def source(self) -> str:
        """Where the files come from, in words: the download address, or the folder they were registered at."""
        return self.url or f"your own data, registered at {self.root}"

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
        if self.flat_fallback:
            parts.append(f"or, without split folders, {where}/{classes}/*.<png|jpg|tif>")
        return "; ".join(parts)

    def required_splits(self) -> tuple[str, ...]:
        """The split folders that must be on disk (the others are carved when missing)."""
        if self.split_dirs is None:
            return ()
        return tuple(s for s in self.split_dirs if s not in self.optional_splits)
