"""Folder datasets (heavy tier): registry, image-folder and CSV-manifest layouts, split carving, the decoded-array
cache, and clear errors for missing or malformed datasets. Every dataset here is a few generated PNGs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medft_bench.data import folders
from medft_bench.data.folders import decoding
from medft_bench.data.sources import dataset_names, load_dataset
from medft_bench.errors import DataError, DatasetNotFoundError, UnknownNameError

BUILTIN = ("chest_xray_pneumonia", "brain_tumor_mri", "nct_crc_he", "ham10000", "kvasir_v2")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, folder_registry: None) -> None:
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(folders.ROOT_ENV, raising=False)


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every image decode, recorded (the real decoder still runs)."""
    calls: list[Path] = []
    real = decoding._decode_image

    def counting(path: Path, *args, **kwargs):
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(decoding, "_decode_image", counting)
    return calls


def grey_value(label: int) -> int:
    return 20 + 25 * label  # up to 10 classes


def write_image(path: Path, label: int, *, size: tuple[int, int] = (24, 20), mode: str = "RGB") -> Path:
    """A flat image whose colour encodes its label (so image/label pairing can be checked after loading)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    v = grey_value(label)
    w, h = size
    if mode == "L":
        arr = np.full((h, w), v, np.uint8)
    else:
        arr = np.empty((h, w, 3), np.uint8)
        arr[...] = (v, 255 - v, 128)
    Image.fromarray(arr).save(path)
    return path


def make_class_folders(base: Path, classes: list[str], counts: dict[str, int], ext: str = ".png",
                       mode: str = "RGB") -> None:
    """``base/<split dir>/<class>/img_i<ext>``; a split dir of "" means class folders directly under ``base``."""
    for split_dir, n in counts.items():
        for c, cls in enumerate(classes):
            for i in range(n):
                write_image(base / split_dir / cls / f"{cls}_{split_dir or 'all'}_{i:03d}{ext}", c, mode=mode)


def check_pairing(bundle, channels: int = 3) -> None:
    """Each image's colour matches its label; arrays have the documented dtypes and shapes."""
    for s in ("train", "val", "test"):
        split = bundle.split(s)
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.ndim == 4 and split.images.shape[1] == channels
        assert split.labels.shape == (len(split),)
        first = split.images[:, 0].float().mean(dim=(1, 2))
        want = torch.tensor([grey_value(int(y)) for y in split.labels], dtype=torch.float32)
        if channels == 1:  # RGB (v, 255-v, 128) converted to luminance
            want = 0.299 * want + 0.587 * (255 - want) + 0.114 * 128
        assert torch.allclose(first, want, atol=3), (s, first, want)


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cache_files(tmp_path: Path) -> list[str]:
    d = tmp_path / "cache" / "folders"
    return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []  # not conversions (dirs)


# ------------------------------------------------------------------------------------------ registry


def test_registry_describes_each_builtin_dataset() -> None:
    reg = folders.registry()
    assert set(BUILTIN) <= set(reg)
    want = {"chest_xray_pneumonia": (2, "x-ray", "binary-class", 1), "brain_tumor_mri": (4, "mri", "multi-class", 1),
            "nct_crc_he": (9, "histology", "multi-class", 3), "ham10000": (7, "dermoscopy", "multi-class", 3),
            "kvasir_v2": (8, "endoscopy", "multi-class", 3)}
    for name, (n, modality, task, channels) in want.items():
        spec = reg[name]
        assert spec.name == name
        assert (len(spec.classes), spec.modality, spec.task, spec.channels) == (n, modality, task, channels)
        assert spec.url and spec.citation and spec.licence and spec.instructions
        assert spec.layout in ("folders", "csv")
        assert set(spec.label_names) == set(spec.classes)
        assert spec.layout_text().startswith("<root>/")
    assert reg["brain_tumor_mri"].classes == ("glioma", "meningioma", "notumor", "pituitary")
    assert reg["nct_crc_he"].classes == ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
    assert reg["ham10000"].classes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
    assert reg["ham10000"].layout == "csv" and reg["ham10000"].manifest == "HAM10000_metadata.csv"
    assert "Kermany" in reg["chest_xray_pneumonia"].citation
    assert "Kather" in reg["nct_crc_he"].citation and "Tschandl" in reg["ham10000"].citation
    assert "Pogorelov" in reg["kvasir_v2"].citation
    assert "NC" in reg["ham10000"].licence
    assert set(BUILTIN) <= set(dataset_names())


def test_register_rejects_taken_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="built-in"):
        folders.register_folder_dataset("ham10000", tmp_path)
    with pytest.raises(ValueError, match="MedMNIST flag"):
        folders.register_folder_dataset("pathmnist", tmp_path)
    with pytest.raises(ValueError, match="name"):
        folders.register_folder_dataset("../escape", tmp_path)
    with pytest.raises(ValueError, match="layout"):
        folders.register_folder_dataset("x", tmp_path, layout="zip")
    with pytest.raises(ValueError, match="exactly 2 classes"):
        folders.register_folder_dataset("x", tmp_path, classes=["a", "b", "c"], task="binary-class")
    with pytest.raises(ValueError, match="not supported"):
        folders.register_folder_dataset("x", tmp_path, task="multi-label, binary-class")


def test_unknown_folder_dataset_lists_names() -> None:
    with pytest.raises(DataError) as err:
        folders.load_folder_dataset("kvasir", 32)
    assert isinstance(err.value, UnknownNameError)
    assert "kvasir_v2" in str(err.value)


# ------------------------------------------------------------------------------------------ folders layout


def test_user_folders_with_all_splits(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    make_class_folders(root, ["benign", "malignant", "normal"], {"train": 6, "val": 2, "test": 3})
    spec = folders.register_folder_dataset("mine", root, modality="ultrasound")
    assert "mine" in folders.registry() and "mine" in dataset_names()
    assert spec.root == root
    b = load_dataset("mine", 16)
    assert (b.name, b.task, b.n_classes, b.n_channels, b.modality) == ("mine", "multi-class", 3, 3, "ultrasound")
    assert b.label_names == {"0": "benign", "1": "malignant", "2": "normal"}
    assert [len(b.split(s)) for s in ("train", "val", "test")] == [18, 6, 9]
    assert tuple(b.train.images.shape) == (18, 3, 16, 16)
    check_pairing(b)
    ident = b.identity
    assert ident["source"] == "folder" and ident["synthetic"] is False
    assert ident["root"] == str(root) and ident["files"] == 33
    assert len(ident["fingerprint"]) == 64 and len(ident["md5"]) == 32
    assert "val_carved" not in ident and "test_carved" not in ident
    assert Path(ident["file"]).parent == tmp_path / "cache" / "folders"
    assert Path(ident["file"]).name.startswith("mine_16px_")


def test_binary_task_inferred_for_two_classes(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "d", ["neg", "pos"], {"train": 5, "test": 2})
    folders.register_folder_dataset("two", tmp_path / "d", channels=1)
    b = load_dataset("two", 8)
    assert b.task == "binary-class" and b.n_classes == 2 and b.n_channels == 1
    assert tuple(b.test.images.shape) == (4, 1, 8, 8)
    check_pairing(b, channels=1)


def test_classes_argument_fixes_label_order(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "d", ["a", "b", "c"], {"train": 4, "test": 2})
    folders.register_folder_dataset("ordered", tmp_path / "d", classes=["c", "a", "b"])
    b = load_dataset("ordered", 8)
    assert b.label_names == {"0": "c", "1": "a", "2": "b"}
    # Class "c" (written with colour index 2) is label 0 now.
    imgs, labels = b.train.images, b.train.labels
    assert (imgs[labels == 0][:, 0].float().mean() - grey_value(2)).abs() < 3


def test_explicit_classes_may_pick_a_subset(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "d", ["a", "b", "c"], {"train": 4, "test": 2})
    folders.register_folder_dataset("subset", tmp_path / "d", classes=["a", "c"])
    b = load_dataset("subset", 8)
    assert b.n_classes == 2 and b.task == "binary-class"
    assert b.identity["files"] == 12


def test_val_carved_from_train_stratified_and_deterministic(tmp_path: Path) -> None:
    root = tmp_path / "d"
    make_class_folders(root, ["x", "y"], {"train": 30, "test": 5})
    folders.register_folder_dataset("carve", root)
    first = folders.scan("carve")
    pools = first.pools
    assert first.notes["val_carved"] == 0.1
    assert [len(pools[s]) for s in ("train", "val", "test")] == [54, 6, 10]
    for cls in ("x", "y"):  # stratified: 3 of each class's 30
        assert sum(it.label == cls for it in pools["val"]) == 3
    train_files = {it.path for it in pools["train"]}
    val_files = {it.path for it in pools["val"]}
    assert not train_files & val_files
    assert train_files | val_files == {p for p in (root / "train").rglob("*.png")}
    assert all("/test/" not in str(p) for p in val_files)
    again = folders.scan("carve").pools
    assert [it.path for it in again["val"]] == [it.path for it in pools["val"]]
    b = load_dataset("carve", 8)
    assert [len(b.split(s)) for s in ("train", "val", "test")] == [54, 6, 10]
    assert b.identity["val_carved"] == 0.1
    check_pairing(b)


def test_carving_does_not_depend_on_location(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "one", ["x", "y"], {"": 20})
    make_class_folders(tmp_path / "two" / "deeper", ["x", "y"], {"": 20})
    folders.register_folder_dataset("same", tmp_path / "one")
    a = folders.scan("same").pools
    folders.register_folder_dataset("same", tmp_path / "two" / "deeper")
    b = folders.scan("same").pools
    for s in ("train", "val", "test"):
        assert [p.path.name for p in a[s]] == [p.path.name for p in b[s]]


def test_flat_class_folders_carve_test_and_val(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "flat", ["a", "b", "c", "d"], {"": 20})
    folders.register_folder_dataset("flat", tmp_path / "flat")
    b = load_dataset("flat", 12)
    per_class = {"train": 14, "val": 2, "test": 4}  # test 20% of 20 = 4; val 10% of the remaining 16 = 2
    for s, n in per_class.items():
        assert torch.bincount(b.split(s).labels, minlength=4).tolist() == [n] * 4
    assert b.identity["test_carved"] == 0.2 and b.identity["val_carved"] == 0.1
    check_pairing(b)


def test_images_of_any_size_and_mode_are_resized(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    write_image(root / "train" / "a" / "wide.png", 0, size=(64, 16))
    write_image(root / "train" / "a" / "grey.png", 0, size=(10, 10), mode="L")
    write_image(root / "train" / "a" / "photo.jpg", 0, size=(300, 200))
    write_image(root / "train" / "b" / "tall.bmp", 1, size=(16, 64))
    palette = Image.new("P", (20, 20))
    palette.putpalette([grey_value(1), 255 - grey_value(1), 128] * 256)
    palette.save(root / "train" / "b" / "palette.gif")
    write_image(root / "train" / "b" / "big.tif", 1, size=(200, 210))
    make_class_folders(root, ["a", "b"], {"test": 1})
    (root / "train" / "a" / "notes.txt").write_text("not an image")  # ignored
    (root / "train" / "a" / ".DS_Store").write_bytes(b"\0\1")  # ignored
    folders.register_folder_dataset("mixed", root, val_fraction=0.3)
    b = load_dataset("mixed", 32)
    assert b.identity["files"] == 8
    assert tuple(b.train.images.shape[1:]) == (3, 32, 32)
    check_pairing(b)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    root = tmp_path / "xr"
    for cls, value in (("a", 1000), ("b", 40000)):
        for i in range(3):
            arr = np.full((16, 16), value, np.uint16)
            arr[:8] = 0  # top half black, bottom half ``value``
            d = root / cls
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(d / f"{i}.png")
    folders.register_folder_dataset("xr", root, channels=1, val_fraction=0.4, test_fraction=0.4)
    b = load_dataset("xr", 16)
    imgs = torch.cat([b.split(s).images for s in ("train", "val", "test")])
    assert (imgs[:, 0, :8] == 0).all()
    assert (imgs[:, 0, 8:] == 255).all()  # per-image range scaled to 0..255, never clipped at 255


def test_a_nan_pixel_in_a_float_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    """Issue 27: one NaN made the image's range NaN and the whole image black, silently."""
    root = tmp_path / "ct"
    for cls in ("a", "b"):
        for i in range(3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8), 0.5 + i, np.float32), mode="F").save(root / cls / f"{i}.tif")
    bad = root / "a" / "1.tif"
    arr = np.full((8, 8), 0.5, np.float32)
    arr[2, 3] = np.nan
    Image.fromarray(arr, mode="F").save(bad)
    folders.register_folder_dataset("ct", root, channels=1, val_fraction=0.4, test_fraction=0.4)
    with pytest.raises(DataError, match=r"1\.tif: 1 of 64 pixels are NaN or infinite; .*fix or remove the file"):
        load_dataset("ct", 8)
    arr[2, 3] = 0.5
    Image.fromarray(arr, mode="F").save(bad)
    b = load_dataset("ct", 8)  # once fixed, it loads (a float image scaled by its own range)
    assert len(b.train) + len(b.val) + len(b.test) == 6


def test_centre_crop_keeps_the_middle(tmp_path: Path) -> None:
    root = tmp_path / "crop"
    for cls in ("a", "b"):
        for i in range(3):
            arr = np.zeros((20, 60), np.uint8)
            arr[:, 20:40] = 200  # the middle square is bright, the sides black
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / cls / f"{i}.png")
    folders.register_folder_dataset("crop", root, channels=1, crop="center", val_fraction=0.4, test_fraction=0.4)
    cropped = load_dataset("crop", 10)
    assert (cropped.train.images == 200).all()
    folders.register_folder_dataset("squash", root, channels=1, crop="none", val_fraction=0.4, test_fraction=0.4)
    squashed = load_dataset("squash", 10)
    assert squashed.train.images[:, 0, :, 0].max() < 50  # sides kept, squashed
    assert cropped.identity["fingerprint"] != squashed.identity["fingerprint"]


# ------------------------------------------------------------------------------------------ csv layout


def write_manifest(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def test_csv_manifest_with_splits(tmp_path: Path) -> None:
    root = tmp_path / "csvdata"
    rows = []
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        for c, cls in enumerate(("cat", "dog")):
            for i in range(n):
                rel = f"imgs/{split}_{cls}_{i}.png"
                write_image(root / rel, c)
                rows.append({"path": rel, "label": cls, "split": split})
    write_manifest(root / "manifest.csv", rows, ["path", "label", "split"])
    folders.register_folder_dataset("csvdata", root, layout="csv")
    b = load_dataset("csvdata", 16)
    assert [len(b.split(s)) for s in ("train", "val", "test")] == [10, 4, 6]
    assert b.task == "binary-class" and b.label_names == {"0": "cat", "1": "dog"}
    assert b.identity["layout"] == "csv" and b.identity["files"] == 20
    check_pairing(b)


def test_csv_manifest_without_split_is_carved(tmp_path: Path) -> None:
    root = tmp_path / "c2"
    rows = []
    for c, cls in enumerate(("a", "b", "c")):
        for i in range(10):
            write_image(root / cls / f"{i}.png", c)
            rows.append({"path": f"{cls}/{i}.png", "label": cls})
    write_manifest(root / "labels.csv", rows, ["path", "label"])
    folders.register_folder_dataset("c2", root, layout="csv", manifest="labels.csv", classes=["a", "b", "c"])
    b = load_dataset("c2", 8)
    assert [len(b.split(s)) for s in ("train", "val", "test")] == [21, 3, 6]
    check_pairing(b)


# ------------------------------------------------------------------------------------------ --folder-dataset


def test_option_registers_class_folders_with_keys(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "us", ["benign", "malignant"], {"train": 4, "test": 2}, mode="L")
    spec = folders.register_from_option(f"us={tmp_path / 'us'},channels=1,modality=ultrasound,classes=malignant|benign")
    assert (spec.name, spec.layout, spec.channels, spec.modality) == ("us", "folders", 1, "ultrasound")
    b = load_dataset("us", 8)
    assert b.label_names == {"0": "malignant", "1": "benign"} and b.n_channels == 1


def test_option_picks_the_csv_layout_from_the_path(tmp_path: Path) -> None:
    rows = []
    for c, cls in enumerate(("a", "b")):
        for i in range(6):
            write_image(tmp_path / "d" / f"{cls}{i}.png", c)
            rows.append({"path": f"{cls}{i}.png", "label": cls})
    write_manifest(tmp_path / "d" / "labels.csv", rows, ["path", "label"])
    by_file = folders.register_from_option(f"byfile={tmp_path / 'd' / 'labels.csv'}")
    assert (by_file.layout, by_file.manifest, by_file.root) == ("csv", "labels.csv", tmp_path / "d")
    write_manifest(tmp_path / "d" / "manifest.csv", rows, ["path", "label"])
    by_dir = folders.register_from_option(f"bydir={tmp_path / 'd'}")
    assert (by_dir.layout, by_dir.manifest) == ("csv", "manifest.csv")
    assert load_dataset("bydir", 8).identity["files"] == 12


@pytest.mark.parametrize(("text", "message"), [
    ("nopath", "expected NAME=PATH"),
    ("=/x", "expected NAME=PATH"),
    ("x=", "expected NAME=PATH"),
    ("x={root},colour=red", "bad item 'colour=red'"),
    ("x={root},channels=three", "channels='three' is not a valid int"),
    ("x={root}/missing", "does not exist"),
    ("pathmnist={root}", "is a MedMNIST flag"),
    ("x={root}/a/m.csv,layout=folders", "is a file, so the layout is csv"),
])
def test_option_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.csv").write_text("path,label\n")
    with pytest.raises(DataError, match="--folder-dataset") as err:
        folders.register_from_option(text.format(root=tmp_path))
    assert message in str(err.value)


# ------------------------------------------------------------------------------------------ built-in layouts


def build_chest(base: Path) -> None:
    make_class_folders(base / "chest_xray", ["NORMAL", "PNEUMONIA"], {"train": 10, "val": 2, "test": 3},
                       ext=".jpeg")


def build_brain(base: Path) -> None:
    make_class_folders(base, ["glioma", "meningioma", "notumor", "pituitary"], {"Training": 5, "Testing": 2},
                       ext=".jpg")


def build_nct(base: Path) -> None:
    classes = list(folders.registry()["nct_crc_he"].classes)
    make_class_folders(base, classes, {"NCT-CRC-HE-100K": 5, "CRC-VAL-HE-7K": 2}, ext=".tif")


def build_ham(base: Path) -> None:
    classes = list(folders.registry()["ham10000"].classes)
    rows = []
    n = 0
    for c, dx in enumerate(classes):
        for lesion in range(6):
            for _ in range(2):  # two images per lesion
                image_id = f"ISIC_{n:07d}"
                part = "HAM10000_images_part_1" if n % 2 else "HAM10000_images_part_2"
                write_image(base / part / f"{image_id}.jpg", c, size=(30, 22))
                rows.append({"lesion_id": f"HAM_{dx}_{lesion}", "image_id": image_id, "dx": dx, "dx_type": "histo",
                             "age": "50.0", "sex": "male", "localization": "back"})
                n += 1
    write_manifest(base / "HAM10000_metadata.csv", rows,
                   ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])


def build_kvasir(base: Path) -> None:
    classes = list(folders.registry()["kvasir_v2"].classes)
    make_class_folders(base / "kvasir-dataset-v2", classes, {"": 5}, ext=".jpg")


BUILDERS = {"chest_xray_pneumonia": build_chest, "brain_tumor_mri": build_brain, "nct_crc_he": build_nct,
            "ham10000": build_ham, "kvasir_v2": build_kvasir}


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_layouts_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    data_root = tmp_path / "data"
    BUILDERS[name](data_root / name)
    spec = folders.registry()[name]
    before = snapshot(data_root)
    b = load_dataset(name, 16, root=data_root)
    assert snapshot(data_root) == before  # the dataset folder is only read
    assert (b.name, b.task, b.n_classes, b.n_channels, b.modality) == (
        name, spec.task, len(spec.classes), spec.channels, spec.modality)
    assert [b.label_names[str(i)] for i in range(b.n_classes)] == [spec.label_names[c] for c in spec.classes]
    for s in ("train", "val", "test"):
        assert len(b.split(s)) > 0
        assert set(b.split(s).labels.tolist()) == set(range(b.n_classes))  # stratified: every class everywhere
    check_pairing(b, channels=spec.channels)
    assert b.identity["url"] == spec.url
    # The same dataset through $MEDFT_DATA_ROOT, and with root pointing at the dataset's own folder.
    monkeypatch.setenv(folders.ROOT_ENV, str(data_root))
    assert load_dataset(name, 16).identity["md5"] == b.identity["md5"]
    assert folders.load_folder_dataset(name, 16, data_root / name).identity["md5"] == b.identity["md5"]


def test_chest_xray_small_val_folder_is_merged(tmp_path: Path) -> None:
    build_chest(tmp_path / "chest_xray_pneumonia")
    b = folders.load_folder_dataset("chest_xray_pneumonia", 16, tmp_path)
    assert b.identity["val_dir_merged_into_train"] is True
    assert b.identity["root"] == str(tmp_path / "chest_xray_pneumonia" / "chest_xray")  # unwrapped
    assert [len(b.split(s)) for s in ("train", "val", "test")] == [22, 2, 6]  # (10 + 2) per class, 1 carved
    assert b.n_channels == 1


def test_ham10000_lesions_stay_in_one_split(tmp_path: Path) -> None:
    build_ham(tmp_path / "ham10000")
    s = folders.scan("ham10000", tmp_path)
    lesion_of = {}
    with open(tmp_path / "ham10000" / "HAM10000_metadata.csv") as f:
        for r in csv.DictReader(f):
            lesion_of[r["image_id"]] = r["lesion_id"]
    where: dict[str, set[str]] = {}
    for split, items in s.pools.items():
        for it in items:
            where.setdefault(lesion_of[it.path.stem], set()).add(split)
    assert all(len(v) == 1 for v in where.values())
    counts = {k: len(v) for k, v in s.pools.items()}
    assert counts == {"train": 7 * 8, "val": 7 * 2, "test": 7 * 2}  # of 6 lesions per class: 4 / 1 / 1


# ------------------------------------------------------------------------------------------ missing datasets


@pytest.mark.parametrize("name", BUILTIN)
def test_missing_dataset_explains_where_to_get_it(tmp_path: Path, name: str) -> None:
    (tmp_path / "data").mkdir()
    before = snapshot(tmp_path)
    spec = folders.registry()[name]
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, 64, root=tmp_path / "data")
    msg = str(err.value)
    assert name in msg
    assert spec.url.split()[0] in msg
    assert spec.licence in msg
    assert f"Place it at {tmp_path / 'data' / name}." in msg
    assert spec.layout_text(str(tmp_path / "data" / name)) in msg
    assert snapshot(tmp_path) == before and cache_files(tmp_path) == []


def test_missing_dataset_without_any_root_names_the_variable() -> None:
    with pytest.raises(DatasetNotFoundError, match=r"\$MEDFT_DATA_ROOT") as err:
        load_dataset("kvasir_v2", 64)
    assert "$MEDFT_DATA_ROOT/kvasir_v2" in str(err.value)


def test_missing_dataset_under_env_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(folders.ROOT_ENV, str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nct_crc_he")):
        load_dataset("nct_crc_he", 28)


def test_user_dataset_folder_gone(tmp_path: Path) -> None:
    folders.register_folder_dataset("gone", tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nowhere")):
        load_dataset("gone", 28)


def test_synthetic_flag_is_refused_for_folder_datasets() -> None:
    with pytest.raises(ValueError, match="folder dataset"):
        load_dataset("kvasir_v2", 28, synthetic_data=True)


# ------------------------------------------------------------------------------------------ malformed layouts


def _brain_without_pituitary_test(base: Path) -> None:
    build_brain(base)
    for f in (base / "Testing" / "pituitary").iterdir():
        f.unlink()
    (base / "Testing" / "pituitary").rmdir()


def _brain_empty_class(base: Path) -> None:
    build_brain(base)
    for f in (base / "Training" / "glioma").iterdir():
        f.unlink()
    (base / "Training" / "glioma" / "readme.txt").write_text("no images here")


def _brain_misnamed_class(base: Path) -> None:
    build_brain(base)
    (base / "Testing" / "notumor").rename(base / "Testing" / "no_tumor")


def _brain_no_testing(base: Path) -> None:
    make_class_folders(base, ["glioma", "meningioma", "notumor", "pituitary"], {"Training": 3})


def _brain_corrupt_image(base: Path) -> None:
    build_brain(base)
    (base / "Training" / "meningioma" / "meningioma_Training_001.jpg").write_bytes(b"\xff\xd8 truncated jpeg")


def _ham_unknown_label(base: Path) -> None:
    build_ham(base)
    path = base / "HAM10000_metadata.csv"
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[2] = "foo"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def _ham_missing_image(base: Path) -> None:
    build_ham(base)
    (base / "HAM10000_images_part_2" / "ISIC_0000004.jpg").unlink()


def _ham_missing_column(base: Path) -> None:
    build_ham(base)
    path = base / "HAM10000_metadata.csv"
    path.write_text(path.read_text().replace(",dx,", ",diagnosis,", 1))


MALFORMED = {
    "class-missing": ("brain_tumor_mri", _brain_without_pituitary_test, "class folder 'pituitary' missing"),
    "class-empty": ("brain_tumor_mri", _brain_empty_class, "no images in the class folder"),
    "class-misnamed": ("brain_tumor_mri", _brain_misnamed_class, "unexpected folder(s) ['no_tumor']"),
    "split-missing": ("brain_tumor_mri", _brain_no_testing, "split folder 'Testing' missing"),
    "corrupt-image": ("brain_tumor_mri", _brain_corrupt_image, "meningioma_Training_001.jpg: cannot read the image"),
    "unknown-label": ("ham10000", _ham_unknown_label, "unknown label 'foo' in manifest row 3 (line 4)"),
    "missing-image": ("ham10000", _ham_missing_image, "no image file for image_id 'ISIC_0000004'"),
    "missing-column": ("ham10000", _ham_missing_column, "no 'dx' column"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_layout_says_what_is_wrong(tmp_path: Path, case: str) -> None:
    name, build, problem = MALFORMED[case]
    base = tmp_path / "data" / name
    build(base)
    before = snapshot(tmp_path / "data")
    with pytest.raises(DataError) as err:
        load_dataset(name, 16, root=tmp_path / "data")
    assert not isinstance(err.value, DatasetNotFoundError)
    msg = str(err.value)
    assert problem in msg
    assert str(base) in msg
    assert snapshot(tmp_path / "data") == before
    assert [f for f in cache_files(tmp_path) if f.endswith(".npz")] == []


def _dangling_link(d: Path) -> Path:
    (d / "x.png").symlink_to(d / "gone.png")
    return d / "x.png"


def _link_loop(d: Path) -> Path:
    (d / "x.png").symlink_to(d / "y.png")
    (d / "y.png").symlink_to(d / "x.png")
    return d / "x.png"


def _latin1_name(d: Path) -> Path:
    path = Path(os.fsdecode(bytes(d) + b"/caf\xe9.png"))  # "café" in Latin-1: not UTF-8
    write_image(path, 0)
    return path


@pytest.mark.parametrize(("make", "problem"), [
    (_dangling_link, "a dangling symlink (No such file or directory); fix the link or remove the file"),
    (_link_loop, "a symlink loop (Too many levels of symbolic links); fix the link or remove the file"),
    (_latin1_name, "the file name is not valid UTF-8; rename it in UTF-8"),
], ids=["dangling-symlink", "symlink-loop", "not-utf8"])
def test_unreadable_file_entry_is_refused_naming_it(tmp_path: Path, make, problem: str) -> None:
    """Issue 27, item 9: each was a traceback (FileNotFoundError, OSError ELOOP, UnicodeEncodeError) and, under
    pytest, an INTERNALERROR; now one DataError naming the file, the policy of an image that cannot be decoded."""
    make_class_folders(tmp_path / "d", ["a", "b"], {"": 5})
    bad = make(tmp_path / "d" / "a")
    folders.register_folder_dataset("d", tmp_path / "d")
    with pytest.raises(DataError) as err:
        load_dataset("d", 8)
    msg = str(err.value)
    assert msg.startswith(f"{os.fsencode(bad).decode('utf-8', 'backslashreplace')}: {problem}"), msg
    msg.encode("utf-8")  # printable: no lone surrogate reaches the terminal
    assert folders.default_size("d") == 224  # the grid still builds; loading says what is wrong


def _csv_case(tmp_path: Path, rows: list[dict[str, str]], columns=("path", "label", "split")) -> Path:
    root = tmp_path / "m"
    for c, cls in enumerate(("a", "b")):
        for i in range(4):
            write_image(root / f"{cls}{i}.png", c)
    write_manifest(root / "manifest.csv", rows, list(columns))
    folders.register_folder_dataset("m", root, layout="csv", classes=["a", "b"])
    return root


def _rows() -> list[dict[str, str]]:
    return [{"path": f"{cls}{i}.png", "label": cls, "split": ""} for cls in ("a", "b") for i in range(4)]


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda r: r[5].update(label="foo"), "unknown label 'foo' in manifest row 6 (line 7); known labels: ['a', 'b']"),
    (lambda r: r[1].update(path="missing.png"), "manifest row 2 (line 3): image file 'missing.png' not found"),
    (lambda r: r[2].update(path="a0.png"), "manifest row 3 (line 4): 'a0.png' is listed twice (first in row 1)"),
    (lambda r: r[0].update(split="holdout"), "unknown split 'holdout'"),
    (lambda r: r[4].update(path=""), "manifest row 5 (line 6): empty 'path'"),
    (lambda r: r.clear(), "the manifest has no rows"),
])
def test_malformed_manifest(tmp_path: Path, edit, problem: str) -> None:
    rows = _rows()
    edit(rows)
    root = _csv_case(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_dataset("m", 8)
    assert problem in str(err.value)
    assert str(root / "manifest.csv") in str(err.value)


def _labelled(root: Path, labels: list[tuple[str, str]]) -> Path:
    """A manifest of one image per (label, split) row, classes inferred from the labels."""
    rows = []
    for i, (label, split) in enumerate(labels):
        write_image(root / f"{i}.png", i % 2)
        rows.append({"path": f"{i}.png", "label": label, "split": split})
    write_manifest(root / "manifest.csv", rows, ["path", "label", "split"])
    folders.register_folder_dataset("lab", root, layout="csv")
    return root / "manifest.csv"


TWO = [(c, "") for c in ("benign", "malignant") for _ in range(5)]
SPLIT = [(c, s) for c in ("benign", "malignant") for s in ("train", "train", "train", "test")]


@pytest.mark.parametrize(("labels", "problem"), [
    ([*TWO, ("Benign", ""), ("Benign", "")], "classes 'Benign' and 'benign' differ only in case; use one spelling"),
    ([*SPLIT, ("cyst", "test"), ("cyst", "test")], "class 'cyst' has 0 train, 0 val, 2 test image(s); every class "
                                                  "needs at least one training and one test image"),
    ([*TWO, ("cyst", "")], "class 'cyst' has 1 train, 0 val, 0 test image(s)"),  # one image: never in test
    ([(c, "") for c in ("0", "1") for _ in range(5)] + [("7", "")], "class '7' has 1 train"),  # a stray label
], ids=["case", "test-only", "one-image", "stray-label"])
def test_manifest_class_sets_are_checked_like_the_folder_layout(tmp_path: Path, labels, problem: str) -> None:
    """Issue 27, item 6: each became an extra class and an ok record whose balanced accuracy was taken over the
    classes present (a test-only class, one image); split folders refuse a test-only class."""
    manifest = _labelled(tmp_path / "lab", labels)
    with pytest.raises(DataError) as err:
        load_dataset("lab", 8)
    assert problem in str(err.value)
    assert str(manifest if "case" in problem else manifest.parent) in str(err.value)


def test_folder_layout_class_sets_follow_the_same_rules(tmp_path: Path) -> None:
    """The class rules hold for class folders too: one image in a class, two spellings of one class."""
    make_class_folders(tmp_path / "one", ["a", "b"], {"": 5})
    write_image(tmp_path / "one" / "c" / "0.png", 0)
    folders.register_folder_dataset("one", tmp_path / "one")
    with pytest.raises(DataError, match=r"class 'c' has 1 train, 0 val, 0 test image\(s\)"):
        load_dataset("one", 8)
    make_class_folders(tmp_path / "case", ["benign", "Benign", "malignant"], {"": 5})
    folders.register_folder_dataset("case", tmp_path / "case")
    with pytest.raises(DataError, match="classes 'Benign' and 'benign' differ only in case"):
        load_dataset("case", 8)


@pytest.mark.parametrize("ref", ["../outside/x.png", "sub/../../outside/x.png", "../../../../etc/passwd",
                                 "/etc/passwd", "ABSOLUTE"])
def test_manifest_path_outside_the_root_is_refused(tmp_path: Path, ref: str, decodes: list[Path]) -> None:
    outside = write_image(tmp_path / "outside" / "x.png", 0)  # a real image: it would load without the check
    ref = str(outside) if ref == "ABSOLUTE" else ref
    rows = _rows()
    rows[2].update(path=ref)
    root = _csv_case(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_dataset("m", 8)
    msg = str(err.value)
    assert "\n" not in msg and f"{root / 'manifest.csv'}: manifest row 3 (line 4): 'path' {ref!r}" in msg
    assert f"points outside the dataset root {root}" in msg
    assert decodes == []  # nothing was opened


def test_manifest_path_inside_the_root_may_use_dots(tmp_path: Path) -> None:
    rows = _rows()
    rows[2].update(path="./sub/../a2.png")
    _csv_case(tmp_path, rows)
    assert sum(len(load_dataset("m", 8).split(s)) for s in ("train", "val", "test")) == 8


def test_manifest_missing_label_column(tmp_path: Path) -> None:
    rows = [{"path": r["path"], "split": ""} for r in _rows()]
    _csv_case(tmp_path, rows, columns=("path", "split"))
    with pytest.raises(DataError, match=r"no 'label' column; the columns are \['path', 'split'\]"):
        load_dataset("m", 8)


def test_too_few_classes_or_images(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "one", ["only"], {"": 5})
    folders.register_folder_dataset("one", tmp_path / "one")
    with pytest.raises(DataError, match="need at least 2"):
        load_dataset("one", 8)
    make_class_folders(tmp_path / "tiny", ["a", "b"], {"": 1})
    folders.register_folder_dataset("tiny", tmp_path / "tiny")
    with pytest.raises(DataError, match="split is empty"):
        load_dataset("tiny", 8)


def test_user_test_split_with_extra_class(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "d", ["a", "b"], {"train": 3, "test": 1})
    write_image(tmp_path / "d" / "test" / "c" / "0.png", 2)
    folders.register_folder_dataset("extra", tmp_path / "d")
    with pytest.raises(DataError, match=r"unexpected folder\(s\) \['c'\]"):
        load_dataset("extra", 8)


def test_user_splits_without_train(tmp_path: Path) -> None:
    make_class_folders(tmp_path / "d", ["a", "b"], {"val": 3, "test": 1})
    folders.register_folder_dataset("notrain", tmp_path / "d")
    with pytest.raises(DataError, match="split folder 'train' missing"):
        load_dataset("notrain", 8)


@pytest.mark.parametrize("size", [0, 4, -28, 28.0, "64", True])
def test_bad_size(tmp_path: Path, size) -> None:
    make_class_folders(tmp_path / "d", ["a", "b"], {"": 5})
    folders.register_folder_dataset("d", tmp_path / "d")
    with pytest.raises(DataError, match="image size"):
        folders.load_folder_dataset("d", size)


def test_size_too_large_to_decode_is_a_data_error(tmp_path: Path) -> None:
    """Issue 27, item 11: numpy's "array is too big" was a traceback; the grid refuses such sizes first."""
    make_class_folders(tmp_path / "d", ["a", "b"], {"": 5})
    folders.register_folder_dataset("d", tmp_path / "d")
    with pytest.raises(DataError, match=r"\d+ images at 1000000000 px need .* GiB decoded: use a smaller --img-size"):
        folders.load_folder_dataset("d", 1_000_000_000)


# ------------------------------------------------------------------------------------------ cache


def test_cache_reused_and_invalidated(tmp_path: Path, decodes: list[Path]) -> None:
    root = tmp_path / "d"
    make_class_folders(root, ["a", "b"], {"train": 8, "test": 2})
    folders.register_folder_dataset("cached", root)
    first = load_dataset("cached", 16)
    assert len(decodes) == 20
    [cache_name] = cache_files(tmp_path)
    assert cache_name.startswith("cached_16px_") and cache_name.endswith(".npz")

    second = load_dataset("cached", 16)  # read from the cache: no image decoded
    assert len(decodes) == 20
    for s in ("train", "val", "test"):
        assert torch.equal(first.split(s).images, second.split(s).images)
        assert torch.equal(first.split(s).labels, second.split(s).labels)
    assert second.identity == first.identity

    load_dataset("cached", 24)  # another size: its own cache
    assert len(decodes) == 40
    assert len(cache_files(tmp_path)) == 2

    # A changed file (new content and mtime): the cache for that size is rebuilt and the old one removed.
    victim = root / "train" / "a" / "a_train_000.png"
    write_image(victim, 1)
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    third = load_dataset("cached", 16)
    assert len(decodes) == 60
    assert third.identity["fingerprint"] != first.identity["fingerprint"]
    assert third.identity["md5"] != first.identity["md5"]
    assert len(cache_files(tmp_path)) == 2 and cache_name not in cache_files(tmp_path)

    # A new file: rebuilt, one more image.
    write_image(root / "test" / "b" / "new.png", 1)
    fourth = load_dataset("cached", 16)
    assert len(decodes) == 81
    assert fourth.identity["files"] == first.identity["files"] + 1

    # A removed file: rebuilt.
    (root / "test" / "b" / "new.png").unlink()
    load_dataset("cached", 16)
    assert len(decodes) == 101
    load_dataset("cached", 16)
    assert len(decodes) == 101


def test_corrupt_cache_is_rebuilt(tmp_path: Path, decodes: list[Path]) -> None:
    make_class_folders(tmp_path / "d", ["a", "b"], {"": 5})
    folders.register_folder_dataset("cc", tmp_path / "d")
    first = load_dataset("cc", 8)
    cache = Path(first.identity["file"])
    cache.write_bytes(cache.read_bytes()[:100])
    again = load_dataset("cc", 8)
    assert len(decodes) == 20
    assert again.identity["md5"] == first.identity["md5"]
    assert torch.equal(again.test.images, first.test.images)


def test_cache_identity_is_stable_across_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_class_folders(tmp_path / "x", ["a", "b"], {"train": 5, "test": 2})
    make_class_folders(tmp_path / "y", ["a", "b"], {"train": 5, "test": 2})
    folders.register_folder_dataset("loc", tmp_path / "x")
    a = load_dataset("loc", 8)
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(tmp_path / "other-cache"))
    folders.register_folder_dataset("loc", tmp_path / "y")
    b = load_dataset("loc", 8)
    assert a.identity["md5"] == b.identity["md5"]  # same pixels, labels and file names


def test_read_only_dataset_and_no_writes_outside_cache(tmp_path: Path) -> None:
    root = tmp_path / "ro"
    make_class_folders(root, ["a", "b"], {"": 5})
    for p in sorted(root.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    root.chmod(0o555)
    try:
        folders.register_folder_dataset("ro", root)
        b = load_dataset("ro", 8)
        assert len(b.train) > 0
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


# -- issue 13, item 9: a folder dataset runs at its images' own size ----------------------------------------


@pytest.mark.parametrize(("size", "expected"), [((64, 64), 64), ((40, 24), 24), ((300, 200), 200), ((500, 400), 224),
                                                ((6, 6), 8)])
def test_default_size_is_the_images_own(tmp_path: Path, size: tuple[int, int], expected: int) -> None:
    for c, cls in enumerate(("a", "b")):
        for i in range(6):
            write_image(tmp_path / "d" / cls / f"{i}.png", c, size=size)
    folders.register_folder_dataset("own", tmp_path / "d")
    assert folders.default_size("own") == expected


def test_grid_gives_folder_datasets_their_own_size(tmp_path: Path) -> None:
    from medft_bench.grid import GridOptions, build_grid
    from medft_bench.tiers import get_tier

    for c, cls in enumerate(("a", "b")):
        for i in range(6):
            write_image(tmp_path / "d" / cls / f"{i}.png", c, size=(64, 64))
    folders.register_folder_dataset("own64", tmp_path / "d")
    cells = build_grid(get_tier("quick"), GridOptions(datasets=["own64", "pneumoniamnist"], backbones=["resnet18"],
                                                      strategies=["lp"]))
    assert [(c.cell_id, c.img_size) for c in cells] == [("own-own64-64-resnet18-lp-seed0", 64),
                                                        ("quick-pneumoniamnist-resnet18-lp-seed0", 28)]
    given = build_grid(get_tier("quick"), GridOptions(datasets=["own64"], backbones=["resnet18"], strategies=["lp"],
                                                      img_sizes=[32]))
    assert [c.img_size for c in given] == [32]
    full = build_grid(get_tier("full"), GridOptions(datasets=["kvasir_v2"], backbones=["resnet18"], strategies=["lp"]))
    assert {c.img_size for c in full} == {224}  # built-in datasets: the backbones' input size, as before


# -- issue 17: a large decoded cache is memory-mapped from a conversion removed with its cache -------------------


def test_decoded_cache_memory_mapped_and_its_conversion_removed_with_it(tmp_path: Path, decodes: list[Path],
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from medft_bench.data import mapped

    monkeypatch.setattr(mapped, "MIN_BYTES", 0)  # every cache counts as large
    root = tmp_path / "d"
    make_class_folders(root, ["a", "b"], {"train": 6, "test": 2})
    folders.register_folder_dataset("big", root)
    first = load_dataset("big", 16)
    assert first.train.memory_mapped and first.conversion_s > 0
    check_pairing(first)
    cache = Path(first.identity["file"])
    converted = cache.with_name(cache.name + mapped.SUFFIX)
    assert sorted(p.name for p in converted.glob("*.npy")) == ["test_images.npy", "train_images.npy",
                                                               "val_images.npy"]
    again = load_dataset("big", 16)
    assert again.conversion_s == 0.0 and again.identity == first.identity
    for s in ("train", "val", "test"):
        assert torch.equal(again.split(s).images, first.split(s).images)

    write_image(root / "test" / "b" / "new.png", 1)  # a new file: a new cache, the old one and its arrays go
    third = load_dataset("big", 16)
    assert third.conversion_s > 0 and not converted.exists() and not cache.exists()
    check_pairing(third)
