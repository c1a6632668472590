"""Choosing parameters by what they are (module type), not by what they are called.

Parameter names differ between architectures (ResNet's ``bn1``, DenseNet's ``norm0``, VGG's ``features.1``),
so every strategy that singles out normalisation, convolution or linear parameters goes through these
helpers, which look at module types. Also the probing helpers shared by Auto-RGN and Auto-SNR.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

from medft_bench.errors import MedftError

# The reference's probe budget and the reason a smaller one gives: one definition, in vocabulary.py (records read it
# too: results/upgrade.py)
from medft_bench.vocabulary import REFERENCE_PROBE_BATCHES as REFERENCE_PROBE_BATCHES
from medft_bench.vocabulary import probe_cut as probe_cut

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext

# Normalisation layers: BatchNorm/InstanceNorm (both _NormBase), GroupNorm, LayerNorm (timm's LayerNorm2d
# and BatchNormAct2d subclass these), RMSNorm where torch has it.
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm,
                                           *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()))
CONV_LINEAR_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)
NORM_PARAMS = ("frozen", "train")


def _own_params(model: nn.Module, types: tuple[type[nn.Module], ...]) -> Iterator[tuple[str, str, nn.Module]]:
    """(module name, local parameter name, module) for the direct parameters of modules of ``types``."""
    for mname, module in model.named_modules():
        if isinstance(module, types):
            for pname, _ in module.named_parameters(recurse=False):
                yield mname, pname, module


def _full(mname: str, pname: str) -> str:
    return f"{mname}.{pname}" if mname else pname


def norm_param_names(model: nn.Module) -> list[str]:
    """Affine parameters (weight, bias) of every normalisation module."""
    return [_full(m, p) for m, p, _ in _own_params(model, NORM_TYPES)]


def bias_param_names(model: nn.Module) -> list[str]:
    """Every parameter registered as ``bias`` on its module (conv, linear, normalisation...)."""
    out = []
    for mname, module in model.named_modules():
        for pname, _ in module.named_parameters(recurse=False):
            if pname == "bias":
                out.append(_full(mname, pname))
    return out


def conv_linear_weight_names(model: nn.Module) -> list[str]:
    """The ``weight`` tensors of Conv*d and Linear modules (not biases, not normalisation layers)."""
    return [_full(m, p) for m, p, _ in _own_params(model, CONV_LINEAR_TYPES) if p == "weight"]


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def head_block_names(ctx: CellContext) -> list[str]:
    """The parameters of the last block: the new head (plus, e.g., DenseNet's norm5 that shares its block)."""
    return list(ctx.blocks[-1][1])


def body_blocks(ctx: CellContext) -> list[tuple[str, list[str]]]:
    """The backbone's blocks from the stem up, without the head block."""
    return list(ctx.blocks[:-1])


def candidate_names(ctx: CellContext, norm_params: str) -> list[str]:
    """Every parameter, less normalisation parameters when ``norm_params`` is ``"frozen"``."""
    if norm_params not in NORM_PARAMS:
        raise MedftError(f"norm_params must be one of {NORM_PARAMS}, got {norm_params!r}")
    names = ctx.param_names
    if norm_params == "train":
        return names
    frozen = set(norm_param_names(ctx.model)) - set(ctx.head_names)
    return [n for n in names if n not in frozen]


def apply_modes(ctx: CellContext, norm_mode: str, trainable: frozenset[str]) -> None:
    """Set ``requires_grad`` and train/eval modes as the engine will for an epoch with this plan."""
    for n, p in ctx.named_params().items():
        p.requires_grad_(n in trainable)
    ctx.apply_modes(norm_mode)


def batch_gradients(ctx: CellContext, names: list[str], n_batches: int, norm_mode: str
                    ) -> Iterator[list[torch.Tensor]]:
    """The loss gradient of each of the epoch's first ``n_batches`` training batches, per tensor of ``names``.

    The model runs in the plan's modes; nothing is stepped and ``.grad`` is left empty (``autograd.grad``).
    """
    named = ctx.named_params()
    params = [named[n] for n in names]
    apply_modes(ctx, norm_mode, frozenset(names))
    model = ctx.model
    for x, y in ctx.train_batches(n_batches):
        with ctx.autocast():
            logits = model(x)
        loss = ctx.loss(logits, y)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        yield [torch.zeros_like(p) if g is None else g.detach().float() for p, g in zip(params, grads)]
    for p in named.values():
        p.grad = None

