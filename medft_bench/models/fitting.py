"""Loading weights into a backbone, the one rule for every source (a hub's file, a local file, a packaged
checkpoint): every tensor but the replaced head must load, with its shape (:func:`load_fitting`); and a weight
file's checksum for the record (:func:`sha256`). Below ``factory.py`` and ``packaged.py``, which both use it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from medft_bench.errors import WeightsError


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def load_fitting(model: nn.Module, sd: dict[str, torch.Tensor], head: tuple[str, ...], what: str, full: str) -> int:
    """Load ``sd`` into every tensor of ``model`` except its ``head`` (the replaced classifier); return how
    many tensors were loaded.

    Anything that does not fit is a :class:`WeightsError` (and the half-loaded model is never returned): a
    tensor of the model missing from ``sd``, a tensor of ``sd`` the model does not have, or a shape that differs.
    timm's own file loading is non-strict whenever the head is replaced, which would let a wrong file run on
    random weights; its model-specific key converters are not applied either, so a file must use timm's names
    (as the hub's files do).
    """

    def in_head(key: str) -> bool:
        return any(key == h or key.startswith(h + ".") for h in head)

    body = {k: v for k, v in sd.items() if not in_head(k)}
    own = model.state_dict()
    other = {k for k, v in body.items() if k in own and v.shape != own[k].shape}
    shapes = [f"{k} {tuple(body[k].shape)} vs {tuple(own[k].shape)}" for k in body if k in other]
    # torch's own rules decide what is missing (e.g. BatchNorm's step counter may be absent). On any misfit the
    # model is discarded: the error is raised before it is returned.
    result = model.load_state_dict({k: v for k, v in body.items() if k not in other}, strict=False)
    missing = [k for k in result.missing_keys if not in_head(k) and k not in other]
    unexpected = list(result.unexpected_keys)
    if shapes or missing or unexpected:
        parts = [f"{len(lst)} {label} ({', '.join(lst[:4])}{', ...' if len(lst) > 4 else ''})"
                 for lst, label in ((missing, "missing from the file"), (unexpected, "unexpected"),
                                    (shapes, "with another shape (file vs model)")) if lst]
        raise WeightsError(f"{what} do not fit {full}: {'; '.join(parts)}. Every tensor except the head "
                           f"({', '.join(head)}) must load from the file: give the weights of {full}")
    return len(body)
