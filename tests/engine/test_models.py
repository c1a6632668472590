"""Backbones: the factory, local weight files (found by name, loaded only when they fit), and block partitions."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import save_file

from medft_bench.errors import UnknownNameError, WeightsError
from medft_bench.models import create_backbone
from medft_bench.models.blocks import check_partition
from medft_bench.models.factory import DEFAULT_TAGS


def _body(sd: dict[str, torch.Tensor], head_prefix: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(head_prefix + ".")}


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weight_file_loads_and_replaces_head(tmp_path, suffix: str) -> None:
    torch.manual_seed(1)
    source = create_backbone("resnet18", 1000, "random")
    sd = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    path = tmp_path / f"resnet18{suffix}"
    save_file(sd, str(path)) if suffix == ".safetensors" else torch.save(sd, path)

    torch.manual_seed(2)
    loaded = create_backbone("resnet18", 3, str(path))
    got = loaded.model.state_dict()
    for k, v in _body(sd, "fc").items():
        assert torch.equal(got[k], v), k
    assert loaded.model.get_classifier().out_features == 3
    assert loaded.weights["source"] == "file" and len(loaded.weights["sha256"]) == 64
    assert loaded.weights["file"] == str(path)


def test_weight_directory_and_tagged_names(tmp_path) -> None:
    sd = create_backbone("resnet18", 1000, "random").model.state_dict()
    torch.save(sd, tmp_path / "resnet18.a1_in1k.pth")
    b = create_backbone("resnet18.a1_in1k", 2, str(tmp_path))
    assert b.weights["file"].endswith("resnet18.a1_in1k.pth")
    assert torch.equal(b.model.state_dict()["conv1.weight"], sd["conv1.weight"])
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", 2, str(tmp_path / "empty_dir_missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="no weights for resnet18.a1_in1k in .* accepted names: "):
        create_backbone("resnet18", 2, str(tmp_path / "empty"))


def test_vgg19_is_torchvision_architecture_and_loads_torchvision_checkpoints(tmp_path) -> None:
    from torchvision.models import vgg19

    tv = vgg19(weights=None)
    torch.save(tv.state_dict(), tmp_path / "vgg19-dcbb9e9d.pth")  # torchvision's own file name, in a directory
    b = create_backbone("vgg19", 7, str(tmp_path))
    assert b.weights["file"] == str(tmp_path / "vgg19-dcbb9e9d.pth")
    assert b.weights["tensors_loaded"] == len(tv.state_dict()) - 2  # all but the head
    got = b.model.state_dict()
    for k, v in tv.state_dict().items():
        if not k.startswith("classifier.6."):
            assert torch.equal(got[k], v), k
    assert b.model.get_classifier().out_features == 7
    assert isinstance(b.model.classifier[0], torch.nn.Linear)  # not timm's conv-MLP classifier
    assert [n for n, _ in b.blocks] == ["conv1", "conv2", "conv3", "conv4", "conv5", "classifier"]
    x = torch.randn(2, 3, 32, 32)
    assert b.model(x).shape == (2, 7) and b.features(x).shape == (2, 4096)


def test_corrupt_weight_file_is_a_clear_error(tmp_path) -> None:
    bad = tmp_path / "resnet18.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="resnet18"):
        create_backbone("resnet18", 2, str(bad))
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", 2, str(tmp_path / "nope.pth"))


def test_pretrained_offline_fails_fast_and_never_falls_back_to_random(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(WeightsError, match="--weights"):
        create_backbone("resnet18", 2, "pretrained")
    assert time.perf_counter() - t0 < 30


def test_unknown_backbone_lists_alternatives() -> None:
    with pytest.raises(UnknownNameError, match="timm"):
        create_backbone("resnet_does_not_exist", 2)


def test_study_partitions() -> None:
    r = create_backbone("resnet50", 2)
    assert [n for n, _ in r.blocks] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    d = create_backbone("densenet121", 2)
    assert [n for n, _ in d.blocks] == ["stem", "denseblock1", "transition1", "denseblock2", "transition2",
                                        "denseblock3", "transition3", "denseblock4", "norm5+classifier"]
    for b in (r, d):
        check_partition(b.model, b.blocks)
        assert set(b.head_param_names()) <= set(b.blocks[-1][1])


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "convnext_tiny", "vit_small_patch16_224"])
def test_generic_partitions_cover_every_parameter_in_order(name: str) -> None:
    b = create_backbone(name, 4)
    names = [n for n, _ in b.model.named_parameters()]
    flat = [p for _, ps in b.blocks for p in ps]
    assert sorted(flat) == sorted(names) and len(flat) == len(set(flat))
    assert set(b.head_param_names()) <= set(b.blocks[-1][1])
    first = {p for p in b.blocks[0][1]}
    assert any(k in p for p in first for k in ("stem", "conv", "patch_embed", "embed", "cls_token"))
    assert b.model.get_classifier().out_features == 4


def test_target_size() -> None:
    assert create_backbone("densenet121", 2).target_size(28) == 32
    assert create_backbone("resnet18", 2).target_size(64) == 64
    assert create_backbone("vit_small_patch16_224", 2).target_size(28) == 224


def test_reused_backbone_is_indistinguishable_from_a_fresh_build() -> None:
    from medft_bench.models.factory import _LAST_BUILT, create_backbone_reusing

    _LAST_BUILT.clear()
    fresh = []
    for _ in range(2):
        torch.manual_seed(3)
        b = create_backbone("resnet18", 4, "random")
        fresh.append((b.model.state_dict(), torch.get_rng_state()))
    torch.manual_seed(3)
    first = create_backbone_reusing("resnet18", 4, "random")
    with torch.no_grad():
        first.model.fc.weight.add_(1.0)  # a cell's training must not leak into the next cell's copy
    torch.manual_seed(3)
    second = create_backbone_reusing("resnet18", 4, "random")
    assert second.model is not first.model and len(_LAST_BUILT) == 1
    for k, v in fresh[0][0].items():
        assert torch.equal(second.model.state_dict()[k], v), k
    assert torch.equal(torch.get_rng_state(), fresh[0][1])  # the RNG continues as after a fresh build
    torch.manual_seed(4)  # another seed draws other weights: no reuse
    other = create_backbone_reusing("resnet18", 4, "random")
    assert not torch.equal(other.model.fc.weight, second.model.fc.weight)
    assert second.blocks == create_backbone("resnet18", 4, "random").blocks


# -- issue 13, item 1: a weights directory holds the study tag's file under any of timm's names ----------------


def _save_body(backbone: str, path, tag_sd: dict | None = None) -> dict[str, torch.Tensor]:
    sd = tag_sd or {k: v.contiguous() for k, v in create_backbone(backbone, 1000, "random").model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path)) if path.suffix == ".safetensors" else torch.save(sd, path)
    return sd


@pytest.mark.parametrize(("backbone", "name"), [
    ("resnet50", "resnet50.tv2_in1k.safetensors"),  # the name README and the hub error give
    ("densenet121", "densenet121.tv_in1k.safetensors"),
    ("resnet50", "resnet50.tv2_in1k/model.safetensors"),  # a clone of the hub repository timm/resnet50.tv2_in1k
    ("resnet50", "resnet50-11ad3fa6.pth"),  # the checkpoint's original (torchvision) file name
    ("densenet121", "models--timm--densenet121.tv_in1k/snapshots/0123abc/model.safetensors"),  # a hub cache
])
def test_weight_directory_finds_the_study_tags_file(tmp_path, backbone: str, name: str) -> None:
    torch.manual_seed(5)
    sd = _save_body(backbone, tmp_path / name)
    b = create_backbone(backbone, 2, str(tmp_path))
    assert b.weights["file"] == str(tmp_path / name) and b.weights["source"] == "file"
    assert b.weights["tag"] == f"{backbone}.{DEFAULT_TAGS[backbone]}"
    got = b.model.state_dict()
    body = _body(sd, b.head_prefix)
    assert all(torch.equal(got[k], v) for k, v in body.items())
    assert b.weights["tensors_loaded"] == len(body)


def test_weight_directory_without_the_file_lists_the_accepted_names(tmp_path) -> None:
    (tmp_path / "resnet50.a1_in1k.safetensors").write_bytes(b"")  # another tag's file does not count
    with pytest.raises(WeightsError) as err:
        create_backbone("resnet50", 2, str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and f"no weights for resnet50.tv2_in1k in {tmp_path}; accepted names: " in msg
    for name in ("resnet50.tv2_in1k.safetensors", "resnet50.tv2_in1k.pth", "resnet50.tv2_in1k/model.safetensors",
                 "models--timm--resnet50.tv2_in1k/snapshots/*/model.safetensors", "resnet50-11ad3fa6.pth",
                 "resnet50.safetensors"):
        assert name in msg
    assert "resnet50.a1_in1k" not in msg.split("accepted names: ")[1]


def test_weight_directory_for_other_timm_models_uses_timms_default_tag(tmp_path) -> None:
    _save_body("resnet18", tmp_path / "resnet18.a1_in1k.safetensors")
    assert create_backbone("resnet18", 2, str(tmp_path)).weights["tag"] == "resnet18.a1_in1k"


# -- issue 13, item 2: a weights file that does not fit is refused, not half-loaded ---------------------------


@pytest.mark.parametrize(("content", "problem"), [
    (lambda: {"foo": torch.zeros(1)}, r"missing from the file \(conv1\.weight, bn1\.weight, .*1 unexpected \(foo\)"),
    (lambda: create_backbone("resnet34", 1000, "random").model.state_dict(), r"unexpected \(layer1\.2\."),
    (lambda: create_backbone("resnet50", 1000, "random").model.state_dict(), r"with another shape .*conv1\.weight|"
                                                                             r"missing from the file"),
    (lambda: {k: v for k, v in create_backbone("resnet18", 1000, "random").model.state_dict().items()
              if k != "layer4.1.conv2.weight"}, r"1 missing from the file \(layer4\.1\.conv2\.weight\)"),
], ids=["foreign-key", "resnet34", "resnet50", "one-tensor-short"])
def test_weights_that_do_not_fit_are_refused(tmp_path, content, problem: str) -> None:
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in content().items()}, str(path))
    with pytest.raises(WeightsError, match=problem) as err:
        create_backbone("resnet18", 2, str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "resnet18" in msg and "must load from the file" in msg


def test_head_of_any_size_or_none_is_replaced_and_counted(tmp_path) -> None:
    sd = create_backbone("resnet18", 5, "random").model.state_dict()  # a 5-class head: replaced
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "five.pth")  # a training checkpoint
    b = create_backbone("resnet18", 2, str(tmp_path / "five.pth"))
    assert b.weights["tensors_loaded"] == len(sd) - 2 and b.model.fc.out_features == 2
    save_file(_body(sd, "fc"), str(tmp_path / "headless.safetensors"))
    headless = create_backbone("resnet18", 2, str(tmp_path / "headless.safetensors"))
    assert headless.weights["tensors_loaded"] == len(sd) - 2


def test_vgg19_file_that_does_not_fit_is_refused(tmp_path) -> None:
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "vgg19.pth")
    with pytest.raises(WeightsError, match=r"do not fit vgg19: .*missing from the file .*1 with another shape"):
        create_backbone("vgg19", 2, str(tmp_path))


def test_hub_weights_that_do_not_load_are_asked_once_and_say_where_to_get_them(monkeypatch) -> None:
    """Issue 42: a grid without a network fails each further cell of a backbone at once (not after the hub client's
    retries, ~45 s a cell), with the file, where it comes from, and the two ways to bring it here."""
    import timm

    from medft_bench.models import factory

    calls = []

    def unreachable(name, pretrained=False, **kwargs):
        if pretrained:
            calls.append(name)
            raise OSError("no network")
        return real(name, pretrained=pretrained, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(factory, "_HUB_FAILED", {})
    monkeypatch.setattr(timm, "create_model", unreachable)
    messages = []
    for _ in range(2):
        with pytest.raises(WeightsError) as err:
            create_backbone("resnet18.a1_in1k", 2, "pretrained")
        messages.append(str(err.value))
    assert calls == ["resnet18.a1_in1k"] and messages[0] == messages[1]
    assert "model.safetensors of https://huggingface.co/timm/resnet18.a1_in1k" in messages[0]
    assert "python -m medft_bench download" in messages[0]
    assert "DIR/resnet18.a1_in1k.safetensors and pass --weights DIR" in messages[0]


def test_weights_with_nan_or_infinity_are_refused_naming_the_tensors(tmp_path) -> None:
    """Issue 43: NaN weights trained to nothing and were refused only at the end, as a record that "does not match
    result schema v2: head/feature_rms_norm: None is not of type 'number'"."""
    sd = create_backbone("resnet18", 1000, "random").model.state_dict()
    sd["layer1.0.conv1.weight"][0, 0] = float("nan")
    sd["bn1.running_var"][:2] = float("inf")
    sd["fc.weight"][:] = float("nan")  # the replaced head's: never loaded, so not the file's fault
    path = tmp_path / "resnet18.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        create_backbone("resnet18", 2, str(path))
    assert str(err.value) == (
        f"the weights in {path} hold NaN or infinite values: bn1.running_var (0 NaN, 2 infinite of 64), "
        "layer1.0.conv1.weight (9 NaN, 0 infinite of 36864); the weights are damaged (or saved from a diverged "
        "training): give finite weights")
