"""A random backbone's BatchNorm statistics come from training images; pretrained and BN-free ones are untouched."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from medft_bench.config import check_numbers
from medft_bench.errors import MedftError
from medft_bench.models.norm_stats import batch_norms
from medft_bench.training.engine import build_context, run_cell
from medft_bench.training.features import extract
from tests.helpers import tiny_cell


def test_first_layer_statistics_are_the_training_images_statistics() -> None:
    # 32 training images in batches of 16, 4 batches asked: both batches are used, each once.
    ctx, _ = build_context(tiny_cell("resnet18", "lp", random_norm_stats=4))
    stats = ctx.backbone.weights["norm_stats"]
    assert stats["batches"] == 2 and stats["images"] == 32 and stats["layers"] == len(batch_norms(ctx.model))
    with torch.no_grad():
        conv1 = ctx.model.conv1(ctx.to_input(ctx.data.train.images))
    # Two batches of equal size: the cumulative average of batch means is the mean over every image.
    torch.testing.assert_close(ctx.model.bn1.running_mean, conv1.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert ctx.model.bn1.num_batches_tracked.item() == 2
    assert ctx.model.bn1.momentum == 0.1  # the layer's own momentum is back for training


def test_eval_features_no_longer_shrink() -> None:
    before, _ = build_context(tiny_cell("resnet18", "lp", random_norm_stats=0))
    after, _ = build_context(tiny_cell("resnet18", "lp"))
    assert "norm_stats" not in before.backbone.weights
    assert all(m.running_mean.abs().max() == 0 for m in batch_norms(before.model))
    n0 = extract(before, "train").norm(dim=1).mean()
    n1 = extract(after, "train").norm(dim=1).mean()
    assert n1 > 3 * n0, (n0, n1)
    assert after.head_init["feature_rms_norm"] > 3 * before.head_init["feature_rms_norm"]


def test_backbone_without_batchnorm_is_unchanged() -> None:
    ctx, _ = build_context(tiny_cell("vgg19", "lp"))
    assert not batch_norms(ctx.model)
    assert "norm_stats" not in ctx.backbone.weights


def test_record_and_cost() -> None:
    rec = run_cell(tiny_cell("resnet18", "lp"), progress=False).record
    stats = rec["weights"]["norm_stats"]
    assert stats["batches"] == 2 and stats["seconds"] > 0
    assert rec["costs"]["probe_s"] >= stats["seconds"] + rec["head"]["seconds"] - 1e-3


def test_setting_is_part_of_random_cells_identity_only() -> None:
    random_cell = tiny_cell("resnet18", "lp")
    assert replace(random_cell, train=replace(random_cell.train, random_norm_stats=0)).config_hash \
        != random_cell.config_hash
    pretrained = replace(random_cell, weights="pretrained")
    assert "random_norm_stats" not in pretrained.identity()["train"]
    assert replace(pretrained, train=replace(pretrained.train, random_norm_stats=0)).config_hash \
        == pretrained.config_hash


def test_negative_batches_are_refused() -> None:
    with pytest.raises(MedftError, match="random_norm_stats -1 is out of range"):
        check_numbers(tiny_cell(random_norm_stats=-1))
