"""Full-size datasets for the heavy tier, read from image folders or a CSV manifest (filled in below)."""

from __future__ import annotations


def registry() -> dict:
    return {}


def load_folder_dataset(name, size, root):  # pragma: no cover - replaced by the folder-dataset work
    raise NotImplementedError
