"""Memory-mapped splits: one-time conversion, verification on reuse, and batches identical to the in-memory path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from medft_bench.data import mapped, synthetic
from medft_bench.data import medmnist as mm
from medft_bench.data.arrays import Split
from medft_bench.data.batches import iterate
from medft_bench.errors import DataError
from medft_bench.run_env import RunEnv

SPLITS = {"train": 50, "val": 12, "test": 10}


@pytest.fixture
def always_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapped, "MIN_BYTES", 0)


@pytest.fixture
def never_map(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapped, "MIN_BYTES", 1 << 62)


def _file(root: Path, flag: str = "bloodmnist", size: int = 28, seed: int = 0) -> Path:
    return synthetic.write_synthetic_medmnist(flag, size, root, splits=SPLITS, seed=seed)


def _load(root: Path, flag: str = "bloodmnist", size: int = 28):
    return mm.load_medmnist(flag, size, root, download_missing=False)


def _channels_first(raw: np.ndarray) -> torch.Tensor:
    """Today's in-memory layout: the whole split as one contiguous (N, C, H, W) tensor."""
    t = torch.from_numpy(raw)
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize("flag", ["bloodmnist", "chestmnist"])  # RGB and grey
def test_mapped_batches_equal_indexing_the_whole_split(tmp_path: Path, always_map: None, flag: str) -> None:
    path = _file(tmp_path, flag)
    bundle = _load(tmp_path, flag)
    assert bundle.train.memory_mapped and bundle.conversion_s > 0
    with np.load(path) as npz:
        raw = {k: npz[k] for k in npz.files}
    for name in ("train", "val", "test"):
        split = bundle.split(name)
        want = _channels_first(raw[f"{name}_images"])
        assert torch.equal(split.images, want)
        for shuffle in (False, True):
            order = torch.randperm(len(split), generator=torch.Generator().manual_seed(5)) if shuffle else None
            got = list(iterate(split, 16, shuffle=shuffle, generator=torch.Generator().manual_seed(5)))
            start = 0
            for images, labels in got:
                idx = order[start:start + len(images)] if shuffle else torch.arange(start, start + len(images))
                start += len(images)
                assert images.is_contiguous() and images.dtype == torch.uint8
                assert torch.equal(images, want[idx])  # same batch, same order within it
                assert torch.equal(labels, split.labels[idx])
            assert start == len(split)


def test_gather_returns_rows_in_the_order_asked_and_subsets_share_the_map(tmp_path: Path, always_map: None) -> None:
    _file(tmp_path)
    split = _load(tmp_path).train
    whole = split.images
    idx = np.array([7, 3, 40, 3, 0, 49])
    assert torch.equal(torch.from_numpy(split.gather(idx)).permute(0, 3, 1, 2), whole[idx])
    sub = split.subset(20, seed=1)
    assert sub.pixels is split.pixels and len(sub) == 20 and sub.memory_mapped
    chosen = torch.randperm(50, generator=torch.Generator().manual_seed(1))[:20].sort().values
    assert torch.equal(sub.images, whole[chosen])
    assert torch.equal(sub.labels, split.labels[chosen])
    assert torch.equal(sub.subset(5, seed=2).images, sub.images[torch.randperm(20, generator=torch.Generator()
                                                                               .manual_seed(2))[:5].sort().values])


def test_conversion_is_written_once_next_to_the_file_and_reused(tmp_path: Path, always_map: None) -> None:
    path = _file(tmp_path)
    first = _load(tmp_path)
    folder = path.with_name(path.name + mapped.SUFFIX)
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "manifest.json", "test_images.npy",
                                                       "train_images.npy", "val_images.npy"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["key"] == mm.md5sum(path)  # keyed by the source's MD5
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = _load(tmp_path)
    assert again.conversion_s == 0.0 and first.conversion_s > 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps  # nothing rewritten
    with np.load(path) as npz:
        assert np.array_equal(np.load(folder / "train_images.npy"), npz["train_images"])  # the source's NHWC
    assert first.identity == again.identity and "arrays" not in json.dumps(first.identity)


def _damage(folder: Path, how: str) -> None:
    target = folder / "val_images.npy"
    if how == "truncated":
        data = target.read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif how == "replaced":  # same size, other bytes, new mtime
        data = bytearray(target.read_bytes())
        data[-10:] = bytes(10)
        target.write_bytes(bytes(data))
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    elif how == "missing":
        target.unlink()
    elif how == "manifest":
        (folder / "manifest.json").write_text("{not json")
    elif how == "header":  # a valid .npy of another shape, stamped as the manifest says
        manifest = json.loads((folder / "manifest.json").read_text())
        np.save(target, np.zeros((3, 28, 28, 3), np.uint8))
        manifest["files"]["val_images"] = {"size": target.stat().st_size, "mtime_ns": target.stat().st_mtime_ns}
        (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("how", ["truncated", "replaced", "missing", "manifest", "header"])
def test_damaged_conversion_is_detected_and_rebuilt(tmp_path: Path, always_map: None, how: str) -> None:
    path = _file(tmp_path)
    want = _load(tmp_path).val.images
    folder = path.with_name(path.name + mapped.SUFFIX)
    _damage(folder, how)
    again = _load(tmp_path)
    assert again.conversion_s > 0  # converted again, not used as found
    assert torch.equal(again.val.images, want)


def test_a_changed_source_is_converted_again(tmp_path: Path, always_map: None) -> None:
    path = _file(tmp_path, seed=0)
    first = _load(tmp_path).train.images
    _file(tmp_path, seed=1)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = _load(tmp_path)
    assert second.conversion_s > 0 and not torch.equal(second.train.images, first)
    with np.load(path) as npz:
        assert torch.equal(second.train.images, _channels_first(npz["train_images"]))


def test_corrupt_image_data_fails_clearly_and_leaves_no_conversion(tmp_path: Path, always_map: None) -> None:
    arrays = synthetic.make_arrays("multi-class", 8, 3, 28, SPLITS, seed=0)
    path = tmp_path / "bloodmnist.npz"
    np.savez(path, **arrays)  # stored, not compressed: damage the pixels alone, the zip's CRC catches it
    data = bytearray(path.read_bytes())
    pos = data.find(arrays["train_images"][10].tobytes()[:64])
    assert pos > 0
    data[pos:pos + 64] = bytes(64)
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="truncated or corrupt"):
        _load(tmp_path)
    assert not path.with_name(path.name + mapped.SUFFIX).exists()


def test_read_only_data_root_converts_into_the_cache(tmp_path: Path, always_map: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ro"
    path = _file(root)
    mm.file_md5(path)  # the MD5 memo, written while the folder is writable
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(tmp_path / "cache"))
    real_access = os.access
    monkeypatch.setattr(mapped.os, "access", lambda p, mode: False if Path(p) == root else real_access(p, mode))
    root.chmod(0o555)  # and really read-only where the user is not root
    try:
        bundle = _load(root)
    finally:
        root.chmod(0o755)
    assert bundle.train.memory_mapped
    assert sorted(p.name for p in root.iterdir()) == sorted([path.name, mm.VERIFIED_CACHE])  # nothing added
    assert len(list((tmp_path / "cache" / "arrays").iterdir())) == 1


def test_small_files_are_read_into_memory(tmp_path: Path, never_map: None) -> None:
    path = _file(tmp_path)
    bundle = _load(tmp_path)
    assert not bundle.train.memory_mapped and bundle.conversion_s == 0.0
    assert not path.with_name(path.name + mapped.SUFFIX).exists()


def test_released_pages_leave_the_batches_unchanged(tmp_path: Path, always_map: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropping the mapped pages from the resident set (every RELEASE_BYTES) re-reads them from the page cache."""
    from medft_bench.data import arrays

    _file(tmp_path)
    want = _load(tmp_path).train.images
    monkeypatch.setattr(arrays, "RELEASE_BYTES", 1)  # release after every batch
    split = _load(tmp_path).train
    for _ in range(2):
        got = torch.cat([x for x, _ in iterate(split, 7)])
        assert torch.equal(got, want)


def test_split_refuses_other_layouts() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Split(np.zeros((2, 8, 8), np.float32), torch.zeros(2))
    with pytest.raises(ValueError, match="uint8"):
        Split(np.zeros((2, 8), np.uint8), torch.zeros(2))


def test_a_stopped_iteration_does_not_hang(tmp_path: Path, always_map: None) -> None:
    _file(tmp_path)
    split = _load(tmp_path).train
    images, _ = next(iterate(split, 8, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert images.shape == (8, 3, 28, 28)
    it = iterate(split, 8)
    next(it)
    it.close()  # the batch prepared ahead is dropped


@pytest.mark.slow
def test_a_training_run_is_bit_identical_mapped_or_in_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same cell, its data memory-mapped or in memory: the same losses, metrics and checkpoints choice."""
    from medft_bench.runner import compute_cell
    from tests.helpers import tiny_cell

    monkeypatch.setenv("MEDFT_CACHE_DIR", str(tmp_path))  # a fresh synthetic file: the first run converts it

    cfg = tiny_cell(strategy="ft", epochs=2, augment=True, max_train_samples=24)
    records = {}
    for name, threshold in (("mapped", 0), ("memory", 1 << 62)):
        monkeypatch.setattr(mapped, "MIN_BYTES", threshold)
        records[name] = compute_cell(cfg, RunEnv(device="cpu")).record
    got, want = records["mapped"], records["memory"]
    assert got["costs"]["data_conversion_s"] > 0 and want["costs"]["data_conversion_s"] == 0
    assert [e.get("train_loss") for e in got["epochs"]] == [e.get("train_loss") for e in want["epochs"]]
    assert got["metrics"] == want["metrics"]
    assert got["data"] == want["data"]
