"""A random backbone is calibrated on training images: BatchNorm statistics, or LSUV scaling without BatchNorm.
Pretrained weights are never touched."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from medft_bench.config import check_numbers
from medft_bench.errors import MedftError
from medft_bench.models.calibration import _training_batches, batch_norms, lsuv_layers
from medft_bench.results.identity import earlier_hashes, identity_at
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell
from medft_bench.training.engine import build_context
from medft_bench.training.features import extract
from tests.helpers import tiny_cell


def test_first_layer_statistics_are_the_training_images_statistics() -> None:
    # 32 training images in batches of 16, 4 batches asked: both batches are used, each once.
    ctx, _ = build_context(tiny_cell("resnet18", "lp", random_calibration=4))
    done = ctx.backbone.weights["calibration"]
    assert done["method"] == "batchnorm"
    assert done["batches"] == 2 and done["images"] == 32 and done["layers"] == len(batch_norms(ctx.model))
    with torch.no_grad():
        conv1 = ctx.model.conv1(ctx.to_input(ctx.data.train.images))
    # Two batches of equal size: the cumulative average of batch means is the mean over every image.
    torch.testing.assert_close(ctx.model.bn1.running_mean, conv1.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert ctx.model.bn1.num_batches_tracked.item() == 2
    assert ctx.model.bn1.momentum == 0.1  # the layer's own momentum is back for training


def test_eval_features_no_longer_shrink() -> None:
    before, _ = build_context(tiny_cell("resnet18", "lp", random_calibration=0))
    after, _ = build_context(tiny_cell("resnet18", "lp"))
    assert "calibration" not in before.backbone.weights
    assert all(m.running_mean.abs().max() == 0 for m in batch_norms(before.model))
    n0 = extract(before, "train").norm(dim=1).mean()
    n1 = extract(after, "train").norm(dim=1).mean()
    assert n1 > 3 * n0, (n0, n1)
    assert after.head_init["feature_rms_norm"] > 3 * before.head_init["feature_rms_norm"]
    # Estimated statistics re-centre every layer: two images' features are no longer nearly parallel
    # (measured 0.86 before, 0.32 after).
    assert before.head_init["feature_cosine"] > 0.7 > 0.5 > after.head_init["feature_cosine"]


def test_lsuv_gives_every_backbone_layer_unit_output_variance() -> None:
    ctx, _ = build_context(tiny_cell("vgg19", "lp"))
    done = ctx.backbone.weights["calibration"]
    layers = lsuv_layers(ctx)
    assert not batch_norms(ctx.model) and done["method"] == "lsuv"
    assert done["layers"] == len(layers) == 16 + 2  # 16 convolutions, fc6 and fc7; not the new head
    assert ctx.backbone.head not in layers
    # Each layer's output on the calibration batch, measured afresh after the whole pass: variance 1.
    outputs: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, y: outputs.append(y.double())) for m in layers]
    ctx.model.eval()
    with torch.no_grad():
        ctx.model(next(_training_batches(ctx, 1)))
    for h in handles:
        h.remove()
    variances = torch.tensor([y.var(correction=0).item() for y in outputs], dtype=torch.float64)
    torch.testing.assert_close(variances, torch.ones_like(variances), rtol=0, atol=1e-4)


def test_lsuv_lifts_vgg_features_to_unit_scale() -> None:
    before, _ = build_context(tiny_cell("vgg19", "lp", random_calibration=0))
    after, _ = build_context(tiny_cell("vgg19", "lp"))
    assert "calibration" not in before.backbone.weights
    rms0 = extract(before, "train").pow(2).mean().sqrt()
    rms1 = extract(after, "train").pow(2).mean().sqrt()
    # fc7's ReLU output: about 0.02 per feature at initialisation; of the order of 1 once calibrated
    assert rms0 < 0.1 and 0.3 < rms1 < 1.5, (rms0, rms1)
    # LSUV only rescales: the features keep their direction, nearly the same for every image (cosine 0.98; a
    # deep ReLU network without normalisation at initialisation), docs/strategies.md "Reading the smoke tier".
    cos0, cos1 = before.head_init["feature_cosine"], after.head_init["feature_cosine"]
    assert cos0 > 0.95 and cos1 == pytest.approx(cos0, abs=1e-4), (cos0, cos1)


def test_record_and_cost() -> None:
    rec = compute_cell(tiny_cell("resnet18", "lp"), RunEnv(progress=False)).record
    done = rec["weights"]["calibration"]
    assert done["method"] == "batchnorm" and done["batches"] == 2 and done["seconds"] > 0
    assert rec["costs"]["probe_s"] >= done["seconds"] + rec["head"]["seconds"] - 1e-3


def test_setting_is_part_of_the_identity_and_old_pretrained_records_are_found() -> None:
    random_cell = tiny_cell("resnet18", "lp")
    assert replace(random_cell, train=replace(random_cell.train, random_calibration=0)).config_hash \
        != random_cell.config_hash
    pretrained = replace(random_cell, weights="pretrained")
    assert pretrained.identity()["train"]["random_calibration"] == 4  # every field, always
    # Identity v1 left it out for a pretrained cell: its records are found whatever the (inapplicable) setting.
    assert "random_calibration" not in identity_at(pretrained, 1)["train"]
    assert earlier_hashes(replace(pretrained, train=replace(pretrained.train, random_calibration=0)))[1] \
        == earlier_hashes(pretrained)[1]


def test_negative_batches_are_refused() -> None:
    with pytest.raises(MedftError, match="random_calibration -1 is out of range"):
        check_numbers(tiny_cell(random_calibration=-1))
