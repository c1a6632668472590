"""The on-disk feature cache: keyed by data, backbone tensors and preprocessing; shared by LP, LP-FT, kNN."""

from __future__ import annotations

import pytest
import torch

from medft_bench.errors import MedftError
from medft_bench.results.record import validate
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell
from medft_bench.training import features
from medft_bench.training.engine import build_context
from medft_bench.training.features import FeatureCache, extract
from tests.helpers import tiny_cell


@pytest.fixture
def disk_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MEDFT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(features.MODE_ENV, "disk")
    return tmp_path / "features"


def _files(root):
    return sorted(p.name for p in root.rglob("*.pt")) if root.exists() else []


def test_disk_cache_round_trip_equals_extraction(disk_cache) -> None:
    ctx, _ = build_context(tiny_cell("resnet18", "lp"))
    first = FeatureCache(ctx)
    feats = first.get("train")
    assert first.extracted == ["train"] and first.loaded == []
    assert len(_files(disk_cache)) == 1
    second = FeatureCache(ctx)
    again = second.get("train")
    assert second.loaded == ["train"] and second.extracted == []
    assert torch.equal(feats, again)
    torch.testing.assert_close(again, extract(ctx, "train"))


def test_key_tracks_weights_data_and_preprocessing(disk_cache) -> None:
    base, _ = build_context(tiny_cell("resnet18", "lp", seed=0))
    key = FeatureCache(base).key("train")
    same_seed, _ = build_context(tiny_cell("resnet18", "knn", seed=0))
    assert FeatureCache(same_seed).key("train") == key  # another strategy, same frozen backbone: shared
    other_seed, _ = build_context(tiny_cell("resnet18", "lp", seed=1))
    assert FeatureCache(other_seed).key("train")["backbone_hash"] != key["backbone_hash"]  # random weights
    padded, _ = build_context(tiny_cell("resnet18", "lp", preprocess="pad"))
    assert FeatureCache(padded).key("train")["preprocess"] != key["preprocess"]
    subset, _ = build_context(tiny_cell("resnet18", "lp", max_train_samples=20))
    assert FeatureCache(subset).key("train")["n"] == 20
    assert FeatureCache(base).key("val")["split"] == "val"
    with torch.no_grad():  # a changed backbone (not the head) is a different entry
        next(p for n, p in base.model.named_parameters() if n not in base.head_names).add_(1.0)
    assert FeatureCache(base).key("train")["backbone_hash"] != key["backbone_hash"]


def test_lp_then_knn_and_lp_ft_reuse_features_from_disk(disk_cache) -> None:
    lp = compute_cell(tiny_cell("resnet18", "lp", epochs=2), RunEnv(progress=False)).record
    validate(lp)
    assert lp["costs"]["feature_cache"]["extracted"] == ["train", "val", "test"]
    knn = compute_cell(tiny_cell("resnet18", "knn"), RunEnv(progress=False)).record
    validate(knn)
    assert knn["status"] == "ok"
    assert knn["costs"]["feature_cache"]["loaded"] == ["train", "val", "test"]
    assert knn["costs"]["feature_cache"]["extracted"] == []
    lp_again = compute_cell(tiny_cell("resnet18", "lp", epochs=2), RunEnv(progress=False)).record
    assert lp_again["costs"]["feature_cache"]["extracted"] == []
    assert lp_again["metrics"]["test"] == lp["metrics"]["test"]  # the same features give the same head
    lp_ft = compute_cell(tiny_cell("resnet18", "lp_ft", epochs=2), RunEnv(progress=False)).record
    assert lp_ft["status"] == "ok" and "train" in lp_ft["costs"]["feature_cache"]["loaded"]
    assert len(_files(disk_cache)) == 3


def test_memory_mode_writes_nothing(disk_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(features.MODE_ENV, "memory")
    rec = compute_cell(tiny_cell("resnet18", "lp"), RunEnv(progress=False)).record
    assert rec["costs"]["feature_cache"]["mode"] == "memory"
    assert _files(disk_cache) == []


def test_auto_mode_keeps_random_weights_in_memory(disk_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(features.MODE_ENV, "auto")
    ctx, _ = build_context(tiny_cell("resnet18", "lp"))
    assert features.cache_mode(ctx) == "memory"
    monkeypatch.setenv(features.MODE_ENV, "sometimes")
    with pytest.raises(MedftError, match="MEDFT_FEATURE_CACHE"):
        features.cache_mode(ctx)


def test_corrupt_cache_file_is_recomputed(disk_cache) -> None:
    ctx, _ = build_context(tiny_cell("resnet18", "lp"))
    feats = FeatureCache(ctx).get("val")
    (path,) = list(disk_cache.rglob("*.pt"))
    path.write_bytes(b"not a torch file")
    cache = FeatureCache(ctx)
    torch.testing.assert_close(cache.get("val"), feats)
    assert cache.extracted == ["val"]
    assert FeatureCache(ctx).get("val").shape == feats.shape  # rewritten, readable again
