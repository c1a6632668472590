"""Per-batch preprocessing (channels, resize, pad, normalise, augment) and batch iteration."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medft_bench.data.arrays import Split
from medft_bench.data.batches import Preprocess, batch_indices, iterate

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _images(n: int = 4, c: int = 1, size: int = 28, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def _normalised(images: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    x = images.float() / 255.0
    m = torch.tensor(mean[: x.shape[1]]).view(1, -1, 1, 1)
    s = torch.tensor(std[: x.shape[1]]).view(1, -1, 1, 1)
    return (x - m) / s


def test_grey_to_three_channels_and_normalise() -> None:
    images = _images(c=1)
    out = Preprocess(target_size=28)(images)
    assert out.dtype == torch.float32
    assert tuple(out.shape) == (4, 3, 28, 28)
    for ch in range(3):  # the grey channel replicated, then normalised per channel
        want = (images[:, 0].float() / 255.0 - MEAN[ch]) / STD[ch]
        torch.testing.assert_close(out[:, ch], want)
    assert images.dtype == torch.uint8 and images.shape[1] == 1  # the input is left alone


def test_rgb_stays_rgb_with_given_mean_std() -> None:
    images = _images(c=3)
    mean, std = (0.5, 0.25, 0.1), (0.5, 0.2, 0.3)
    out = Preprocess(target_size=28, mean=mean, std=std)(images)
    torch.testing.assert_close(out, _normalised(images, mean, std))


def test_one_channel_backbone_keeps_grey() -> None:
    images = _images(c=1)
    out = Preprocess(target_size=28, channels=1, mean=(0.5,), std=(0.5,))(images)
    assert tuple(out.shape) == (4, 1, 28, 28)
    torch.testing.assert_close(out, images.float() / 255.0 * 2 - 1)


def test_constant_image_normalises_to_expected_value() -> None:
    images = torch.full((2, 3, 28, 28), 255, dtype=torch.uint8)
    out = Preprocess(target_size=28)(images)
    for ch in range(3):
        assert torch.allclose(out[:, ch], torch.tensor((1 - MEAN[ch]) / STD[ch]))


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "nearest-exact", "area"])
def test_resize_28_to_64(interpolation: str) -> None:
    images = _images(c=1)
    out = Preprocess(target_size=64, policy="resize", interpolation=interpolation)(images)
    assert tuple(out.shape) == (4, 3, 64, 64)
    assert torch.isfinite(out).all()
    # A constant image stays constant whatever the interpolation.
    flat = Preprocess(target_size=64, interpolation=interpolation)(torch.full((1, 1, 28, 28), 128, dtype=torch.uint8))
    torch.testing.assert_close(flat[0, 0], torch.full((64, 64), (128 / 255 - MEAN[0]) / STD[0]), atol=1e-5, rtol=0)


def test_resize_nearest_is_pixel_replication() -> None:
    images = _images(n=2, c=1, size=28)
    out = Preprocess(target_size=56, interpolation="nearest", channels=1, mean=(0.0,), std=(1.0,))(images)
    want = images.float().div(255).repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(out, want)


def test_resize_down_224_to_64() -> None:
    out = Preprocess(target_size=64)(_images(n=2, c=3, size=224))
    assert tuple(out.shape) == (2, 3, 64, 64)


def test_pad_28_to_32_border_is_the_mean_colour() -> None:
    images = _images(c=1)
    out = Preprocess(target_size=32, policy="pad")(images)
    assert tuple(out.shape) == (4, 3, 32, 32)
    # The centre is the normalised image; padding comes after normalisation, so the border is 0 there,
    # which is the mean colour in pixel space (MedMNIST+ pads that way).
    torch.testing.assert_close(out[:, :, 2:30, 2:30], _normalised(images.expand(-1, 3, -1, -1)))
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert (out[:, :, border] == 0).all()
    back_to_pixels = out[:, :, 0, 0] * torch.tensor(STD) + torch.tensor(MEAN)
    torch.testing.assert_close(back_to_pixels, torch.tensor(MEAN).expand(4, 3))


def test_pad_odd_difference_is_centred() -> None:
    out = Preprocess(target_size=31, policy="pad", channels=1, mean=(0.0,), std=(1.0,))(
        torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    )
    assert tuple(out.shape) == (1, 1, 31, 31)
    inside = (out[0, 0] == 1).nonzero()
    assert inside[:, 0].min() == 1 and inside[:, 0].max() == 28  # one pixel before, two after
    assert inside[:, 1].min() == 1 and inside[:, 1].max() == 28


def test_pad_to_same_size_is_just_normalise() -> None:
    images = _images(c=3)
    torch.testing.assert_close(Preprocess(target_size=28, policy="pad")(images), _normalised(images))


def test_pad_to_smaller_size_errors() -> None:
    with pytest.raises(ValueError, match="cannot pad 64 px images down to 32 px"):
        Preprocess(target_size=32, policy="pad")(_images(size=64))


def test_unknown_policy_errors() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing policy 'crop'"):
        Preprocess(target_size=32, policy="crop")


def test_describe_is_json_ready() -> None:
    import json

    d = Preprocess(target_size=32, policy="pad", augment=True).describe()
    assert d["target_size"] == 32 and d["policy"] == "pad" and d["augment"] is True
    assert d["mean"] == list(MEAN) and d["std"] == list(STD)
    json.dumps(d)


# ------------------------------------------------------------------------------------------ augmentation


@pytest.mark.parametrize("policy", ["resize", "pad"])
def test_augment_only_when_training_and_enabled(policy: str) -> None:
    images = _images(n=32, c=3, size=28)
    target = 32
    plain = Preprocess(target_size=target, policy=policy)
    aug = Preprocess(target_size=target, policy=policy, augment=True)
    reference = plain(images)
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(plain(images, train=True, generator=g), reference)  # augment=False
    torch.testing.assert_close(aug(images, train=False, generator=g), reference)  # evaluation batch
    changed = aug(images, train=True, generator=torch.Generator().manual_seed(0))
    assert changed.shape == reference.shape
    assert not torch.equal(changed, reference)


def test_augment_is_deterministic_with_a_generator() -> None:
    images = _images(n=32, c=3, size=64)
    aug = Preprocess(target_size=64, augment=True)
    a = aug(images, train=True, generator=torch.Generator().manual_seed(3))
    b = aug(images, train=True, generator=torch.Generator().manual_seed(3))
    c = aug(images, train=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_augment_is_flip_and_shift_only() -> None:
    """Each augmented image is its normalised self, maybe flipped, rolled by at most 5% of the side."""
    images = _images(n=16, c=1, size=64)
    aug = Preprocess(target_size=64, augment=True)
    out = aug(images, train=True, generator=torch.Generator().manual_seed(1))
    base = Preprocess(target_size=64)(images)
    shift = round(64 * 0.05)
    n_flipped = 0
    for i in range(len(images)):
        matches = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(-shift, shift + 1)
            for dx in range(-shift, shift + 1)
            if torch.equal(torch.roll(base[i].flip(-1) if flip else base[i], (dy, dx), (-2, -1)), out[i])
        ]
        assert matches, i
        n_flipped += matches[0][0]
    assert 0 < n_flipped < len(images)  # about half flipped


# ------------------------------------------------------------------------------------------ batches


def test_batch_indices_cover_every_sample_once() -> None:
    seen = torch.cat(list(batch_indices(10, 4, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert sorted(seen.tolist()) == list(range(10))
    assert [len(b) for b in batch_indices(10, 4, shuffle=False)] == [4, 4, 2]
    assert [len(b) for b in batch_indices(10, 4, shuffle=False, drop_last=True)] == [4, 4]
    assert [len(b) for b in batch_indices(3, 4, shuffle=False, drop_last=True)] == [3]  # never empty


def test_iterate_yields_uint8_batches_with_labels() -> None:
    images = _images(n=10, c=1)
    split = Split(images[:, 0].numpy(), torch.arange(10))  # grey, stored (N, H, W) as in MedMNIST
    batches = list(iterate(split, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.dtype == torch.uint8
        assert torch.equal(x, images[y])  # images and labels stay paired


def test_preprocess_matches_interpolate_reference() -> None:
    images = _images(n=2, c=3, size=28)
    out = Preprocess(target_size=64, channels=3, mean=(0, 0, 0), std=(1, 1, 1))(images)
    want = F.interpolate(images.float() / 255, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(out, want)


def test_a_training_epoch_never_ends_with_a_lone_image() -> None:
    """Issue 27, item 8: 96 images at batch 19 left a last batch of 1, and batch-norm cannot train on one image
    (FT failed). The lone image joins the batch before it; every image is still seen once; eval is unchanged."""
    gen = torch.Generator().manual_seed(0)
    batches = list(batch_indices(96, 19, shuffle=True, generator=gen))
    assert [len(b) for b in batches] == [19, 19, 19, 19, 20]
    assert sorted(torch.cat(batches).tolist()) == list(range(96))
    assert [len(b) for b in batch_indices(96, 19, shuffle=False)][-1] == 1  # evaluation: batches as they come
    assert [len(b) for b in batch_indices(95, 19, shuffle=True)] == [19] * 5


def test_batches_of_one_stay_batches_of_one() -> None:
    assert [len(b) for b in batch_indices(5, 1, shuffle=True)] == [1] * 5
