"""One factory for every backbone: timm by name, plus registered builders (VGG-19 as the study built it).

Weights are described by data, not branches: ``pretrained`` (the library's hub weights, with the study's
torchvision tags for its own backbones), a local file or a directory of weight files (loaded through
timm's own ``pretrained_cfg_overlay=dict(file=...)`` path), or ``random`` (explicit opt-in only). A
missing or unreachable weight file is an error, never a silent fallback to random weights.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medft_bench.errors import WeightsError, unknown
from medft_bench.models.blocks import Blocks, partition

# The study used torchvision's ImageNet weights; timm hosts the same tensors under these tags.
DEFAULT_TAGS = {"resnet50": "tv2_in1k", "densenet121": "tv_in1k"}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Backbone:
    """A model with a new C-way head, and what strategies and records need to know about it."""

    name: str
    model: nn.Module
    head_prefix: str
    blocks: Blocks
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224
    min_input_size: int = 32
    fixed_input_size: bool = False
    weights: dict[str, Any] = field(default_factory=dict)

    @property
    def head(self) -> nn.Module:
        return self.model.get_classifier()

    def head_param_names(self) -> list[str]:
        return [f"{self.head_prefix}.{n}" for n, _ in self.head.named_parameters()]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit embeddings: what the head sees."""
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def target_size(self, image_size: int) -> int:
        """The input size for images of ``image_size`` px: fixed-size models get theirs, others >= minimum."""
        return self.input_size if self.fixed_input_size else max(image_size, self.min_input_size)


@dataclass(frozen=True)
class BuilderSpec:
    build: Callable[[int], nn.Module]
    hub_loader: Callable[[nn.Module], dict[str, Any]]
    head_prefix: str


_BUILDERS: dict[str, BuilderSpec] = {}


def register_backbone(name: str, *, head_prefix: str, hub_loader: Callable[[nn.Module], dict[str, Any]]
                      ) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Register a non-timm builder ``fn(num_classes) -> nn.Module`` with a timm-style interface."""

    def deco(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        _BUILDERS[name] = BuilderSpec(fn, hub_loader, head_prefix)
        return fn

    return deco


def _vgg19_hub(model: nn.Module) -> dict[str, Any]:
    from torchvision.models import VGG19_Weights

    w = VGG19_Weights.IMAGENET1K_V1
    try:
        sd = w.get_state_dict(progress=False)
    except Exception as exc:  # urllib, ssl and hub errors vary; all mean "not reachable"
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(w.url).name
        raise WeightsError(
            f"cannot fetch torchvision VGG-19 weights from {w.url} ({type(exc).__name__}). Place the file at "
            f"{target} (torch's hub cache), or pass --weights with a file or directory holding it."
        ) from None
    _load_torchvision_sd(model, sd)
    return {"source": "hub", "tag": "torchvision.VGG19_Weights.IMAGENET1K_V1", "url": w.url}


def _load_torchvision_sd(model: nn.Module, sd: dict[str, torch.Tensor]) -> None:
    head = {k for k in sd if k.startswith("classifier.6.")}
    missing, unexpected = model.load_state_dict({k: v for k, v in sd.items() if k not in head}, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.6.")]
    if missing or unexpected:
        raise WeightsError(f"VGG-19 weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")


@register_backbone("vgg19", head_prefix="classifier.6", hub_loader=_vgg19_hub)
def _vgg19(num_classes: int) -> nn.Module:
    from medft_bench.models.vgg import TorchvisionVGG

    return TorchvisionVGG(num_classes)


def backbone_names(pretrained_only: bool = False) -> list[str]:
    import timm

    return sorted(set(_BUILDERS) | set(timm.list_models(pretrained=pretrained_only)))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def find_weight_file(weights: str | os.PathLike[str], arch: str, tag: str | None) -> Path:
    """A weights file: ``weights`` itself, or the one for ``arch`` inside a directory of weight files."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise WeightsError(f"weights path {path} does not exist; give a weights file, a directory, "
                           "'pretrained' or 'random'")
    stems = [f"{arch}.{tag}" if tag else None, arch]
    candidates = [path / f"{s}{suf}" for s in stems if s for suf in WEIGHT_SUFFIXES]
    candidates += [path / s / f for s in stems if s for f in ("model.safetensors", "pytorch_model.bin")]
    for c in candidates:
        if c.is_file():
            return c
    looked = ", ".join(c.name if c.parent == path else str(c) for c in candidates)
    raise WeightsError(f"no weights for {arch} in {path}; looked for: {looked}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc}") from None
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def create_backbone(name: str, num_classes: int, weights: str = "random", *, drop_rate: float = 0.0) -> Backbone:
    """A backbone named like timm (``resnet50``, ``densenet121``, ``vgg19``, ``convnext_tiny``...).

    ``weights``: ``"pretrained"``, ``"random"``, or a path to a weight file or directory of weight files.
    """
    arch, _, tag = name.partition(".")
    if weights == "pretrained" and not tag:
        tag = DEFAULT_TAGS.get(arch, "")
    if arch in _BUILDERS:
        return _create_registered(arch, num_classes, weights)
    import timm

    if not timm.is_model(arch):
        raise unknown("backbone", name, [*_BUILDERS, "any timm model name (timm.list_models())"])
    full = f"{arch}.{tag}" if tag else arch
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": drop_rate}
    info: dict[str, Any]
    if weights == "random":
        model = timm.create_model(arch, pretrained=False, **kwargs)
        info = {"source": "random"}
    elif weights == "pretrained":
        try:
            model = timm.create_model(full, pretrained=True, **kwargs)
        except Exception as exc:  # hub errors vary by huggingface_hub version; all mean "not reachable"
            raise WeightsError(
                f"cannot load pretrained weights for {full} from the hub ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}). Without a network, download "
                f"the weights elsewhere and pass --weights DIR holding {full}.safetensors (or .pth)."
            ) from None
        info = {"source": "hub", "tag": full, "hf_hub_id": model.pretrained_cfg.get("hf_hub_id")}
    else:
        file = find_weight_file(weights, arch, tag or None)
        try:
            model = timm.create_model(full, pretrained=True, pretrained_cfg_overlay={"file": str(file)}, **kwargs)
        except Exception as exc:
            raise WeightsError(f"cannot load weights file {file} into {full}: {exc}") from None
        info = {"source": "file", "file": str(file), "sha256": sha256(file), "tag": full}
    cfg = model.pretrained_cfg
    head_prefix = cfg.get("classifier", "fc")
    if isinstance(head_prefix, (tuple, list)):
        head_prefix = head_prefix[0]
    if not isinstance(model.get_classifier(), nn.Module) or not list(model.get_classifier().parameters()):
        raise unknown("backbone", name, ["timm models with a classifier head"])
    input_size = int(cfg.get("input_size", (3, 224, 224))[-1])
    return _finish(
        name=arch, model=model, head_prefix=head_prefix, weights=info,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)), std=tuple(cfg.get("std", IMAGENET_STD)),
        input_size=input_size, fixed_input_size=bool(cfg.get("fixed_input_size", False)),
    )


_LAST_BUILT: dict[tuple[str, int, str, int, str], tuple[Backbone, torch.Tensor]] = {}


def create_backbone_reusing(name: str, num_classes: int, weights: str = "random") -> Backbone:
    """``create_backbone``, served from a copy of the previous call's result when nothing that shapes it
    differs: the same arguments and the same torch RNG state before the call (random initialisation draws
    from it). The RNG state after the call is restored as well, so a copy cannot be told from a fresh build.

    A grid runs one backbone's cells one after another: VGG-19 takes about 2 s to initialise on a 2-core CPU,
    a copy about 0.3 s. Weight files given by path are always read afresh (they may change between cells).
    """
    if weights not in ("random", "pretrained"):
        return create_backbone(name, num_classes, weights)
    builder = id(_BUILDERS.get(name.partition(".")[0]))  # a re-registered builder is another backbone
    key = (name, num_classes, weights, builder, hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest())
    if key in _LAST_BUILT:
        template, rng_after = _LAST_BUILT[key]
        torch.set_rng_state(rng_after)
        return copy.deepcopy(template)
    backbone = create_backbone(name, num_classes, weights)
    _LAST_BUILT.clear()  # one template: memory stays at one extra copy of one backbone
    _LAST_BUILT[key] = (copy.deepcopy(backbone), torch.get_rng_state())
    return backbone


def _create_registered(arch: str, num_classes: int, weights: str) -> Backbone:
    spec = _BUILDERS[arch]
    model = spec.build(1000)
    info: dict[str, Any]
    if weights == "random":
        info = {"source": "random"}
    elif weights == "pretrained":
        info = spec.hub_loader(model)
    else:
        file = find_weight_file(weights, arch, None)
        _load_torchvision_sd(model, _read_state_dict(file))
        info = {"source": "file", "file": str(file), "sha256": sha256(file), "tag": arch}
    model.reset_classifier(num_classes)
    return _finish(name=arch, model=model, head_prefix=spec.head_prefix, weights=info)


def _finish(*, name: str, model: nn.Module, head_prefix: str, weights: dict[str, Any], **kw: Any) -> Backbone:
    head = [f"{head_prefix}.{n}" for n, _ in model.get_classifier().named_parameters()]
    return Backbone(name=name, model=model, head_prefix=head_prefix, blocks=partition(model, name, head),
                    weights=weights, **kw)
