"""Ordered partitions of a backbone's parameters into blocks, from the stem to the head.

The layer-wise strategies (gradual unfreezing, surgical, layer-wise learning rates) work on these. The
study's three backbones use the study's partitions; any other timm model uses its own coarse
``group_matcher`` (the grouping timm uses for layer decay), else its top-level children.
"""

from __future__ import annotations

import re

from torch import nn

Blocks = list[tuple[str, list[str]]]

# The study's partitions (``study.md``), as ordered (block name, regex on parameter names).
STUDY_PARTITIONS: dict[str, list[tuple[str, str]]] = {
    "resnet50": [("stem", r"^(conv1|bn1)\."), *[(f"layer{i}", rf"^layer{i}\.") for i in range(1, 5)],
                 ("fc", r"^fc\.")],
    "densenet121": [
        ("stem", r"^features\.(conv0|norm0)\."),
        *[(name, rf"^features\.{name}\.") for i in range(1, 5)
          for name in (f"denseblock{i}", f"transition{i}") if name != "transition4"],
        ("norm5+classifier", r"^(features\.norm5|classifier)\."),
    ],
}


def _by_regex(model: nn.Module, spec: list[tuple[str, str]]) -> Blocks:
    names = [n for n, _ in model.named_parameters()]
    blocks: Blocks = []
    for block, pattern in spec:
        rx = re.compile(pattern)
        blocks.append((block, [n for n in names if rx.search(n)]))
    return blocks


def _vgg_blocks(model: nn.Module) -> Blocks:
    """Five conv stages split at the max-pools, then the three-layer classifier."""
    blocks: Blocks = []
    current: list[str] = []
    for idx, layer in enumerate(model.features):
        current += [f"features.{idx}.{n}" for n, _ in layer.named_parameters()]
        if isinstance(layer, nn.MaxPool2d):
            blocks.append((f"conv{len(blocks) + 1}", current))
            current = []
    blocks.append(("classifier", [n for n, _ in model.named_parameters() if n.startswith("classifier.")]))
    return blocks


def _timm_groups(model: nn.Module) -> Blocks | None:
    if not hasattr(model, "group_matcher"):
        return None
    from timm.models import group_parameters

    try:
        groups = group_parameters(model, model.group_matcher(coarse=True))
    except (NotImplementedError, TypeError, AttributeError):
        return None
    return [(f"group{k}", list(v)) for k, v in sorted(groups.items())]


def _children(model: nn.Module) -> Blocks:
    return [(name, [f"{name}.{n}" for n, _ in child.named_parameters()]) for name, child in model.named_children()]


def partition(model: nn.Module, arch: str, head_params: list[str]) -> Blocks:
    """Blocks of ``model``: every parameter in exactly one block, stem first, the head in the last block."""
    if arch in STUDY_PARTITIONS:
        blocks = _by_regex(model, STUDY_PARTITIONS[arch])
    elif arch.startswith("vgg") and hasattr(model, "features") and isinstance(model.features, nn.Sequential):
        blocks = _vgg_blocks(model)
    else:
        blocks = _timm_groups(model) or _children(model)
    blocks = [(n, p) for n, p in blocks if p]
    head = set(head_params)
    # The head must be the last block; timm's groups put it there but a stray ordering would break GU.
    if blocks and not head <= set(blocks[-1][1]):
        blocks = [(n, [p for p in ps if p not in head]) for n, ps in blocks]
        blocks = [(n, p) for n, p in blocks if p] + [("head", list(head_params))]
    check_partition(model, blocks)
    return blocks


def check_partition(model: nn.Module, blocks: Blocks) -> None:
    names = [n for n, _ in model.named_parameters()]
    seen = [p for _, ps in blocks for p in ps]
    dup = {p for p in seen if seen.count(p) > 1}
    missing = set(names) - set(seen)
    if dup or missing or len(seen) != len(names):
        raise ValueError(f"bad block partition: duplicated {sorted(dup)[:5]}, unassigned {sorted(missing)[:5]}")
