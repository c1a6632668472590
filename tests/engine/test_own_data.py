"""The user's own data (--folder-dataset) treated as real data (issue 42, item 6): a group of its own, its modality
given or inferred and said, and a warning when a validation or test split is too small to rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medft_bench.data.folders import load_folder_dataset, register_from_option
from medft_bench.data.folders.loading import small_split
from medft_bench.data.folders.registration import infer_modality
from medft_bench.tiers import get_tier
from medft_bench.vocabulary import OWN_TIER


def _tree(root: Path, per_class: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(("benign", "malignant")):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8) // (c + 1)).save(root / cls / f"{i}.png")
    return root


def test_own_data_gets_its_own_tier_whatever_tier_ran_it(tmp_path: Path, folder_registry: None) -> None:
    with pytest.warns(UserWarning, match="modality"):
        register_from_option(f"mine={_tree(tmp_path / 'data')},channels=1")
    for tier in ("smoke", "quick"):  # Tier.cell: what build_grid calls for every cell
        cell = get_tier(tier).cell("mine", 8, "resnet18", "lp", 0)
        assert cell.tier == OWN_TIER and cell.cell_id.startswith("own-mine-") and not cell.synthetic
    assert get_tier("smoke").cell("pneumoniamnist", 32, "resnet18", "lp", 0).tier == "smoke"  # MedMNIST: the tier's


def test_the_own_group_says_own_data() -> None:
    from medft_bench.leaderboard.group_key import GroupKey

    key = GroupKey(tier=OWN_TIER, synthetic=False, weights="pretrained", img_size=64)
    assert key.label.startswith("own data, 64 px")


@pytest.mark.parametrize(("name", "path", "modality"), [
    ("busi", "/data/breast", "ultrasound"), ("mine", "/data/chest-x-ray/images", "x-ray"),
    ("lesions", "/srv/ISIC_2019", "dermoscopy"), ("mine", "/data/scans", ""), ("ct_chest", "/d", ""),
])
def test_modality_is_inferred_from_name_and_path_only_when_one_fits(name: str, path: str, modality: str) -> None:
    assert infer_modality(name, *Path(path).parts) == modality


def test_a_given_modality_is_kept_and_an_inferred_one_said(tmp_path: Path, folder_registry: None) -> None:
    data = _tree(tmp_path / "ultrasound")
    with pytest.warns(UserWarning, match="inferred 'ultrasound'"):
        assert register_from_option(f"a={data},channels=1").modality == "ultrasound"
    with pytest.warns(UserWarning, match="'unknown'; add e.g. modality="):
        assert register_from_option(f"b={_tree(tmp_path / 'plain')},channels=1").modality == ""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert register_from_option(f"c={data},channels=1,modality=mri").modality == "mri"


def test_small_split_names_the_split_its_size_and_the_thin_class() -> None:
    classes = ("benign", "malignant")
    assert small_split("val", np.array([0] * 15 + [1] * 10), "binary-class", classes) is None
    why = small_split("val", np.array([0, 0, 0, 1]), "binary-class", classes)
    assert why is not None and why.startswith("the val split has 4 images (class 'malignant': 1): too few to select")
    assert "25 points" in why
    assert "measure" in small_split("test", np.array([0] * 30 + [1]), "binary-class", classes)


def test_loading_a_tiny_split_warns(tmp_path: Path, folder_registry: None) -> None:
    register_from_option(f"tiny={_tree(tmp_path / 'd', per_class=6)},channels=1,modality=mri")
    with pytest.warns(UserWarning, match=r"tiny: the val split has \d+ images?") as seen:
        load_folder_dataset("tiny", 8)
    assert any("the test split has" in str(w.message) for w in seen)
