"""LoRA (Hu et al., 2022) on a CNN's convolutions and linear layers, through the ``peft`` library."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medft_bench.errors import MedftError
from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import under

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext

TARGETS = {"conv_linear": (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear), "conv": (nn.Conv1d, nn.Conv2d, nn.Conv3d),
           "linear": (nn.Linear,)}
ADAPTER = "default"


def target_modules(model: nn.Module, head_prefix: str, target: str) -> tuple[list[str], list[str]]:
    """(modules to adapt, grouped convolutions skipped): by module type, never the head.

    peft's LoRA for grouped convolutions needs the rank divisible by the groups (depthwise convolutions
    fail), so convolutions with ``groups > 1`` are left out.
    """
    if target not in TARGETS:
        raise MedftError(f"lora: unknown target {target!r}; use one of {', '.join(TARGETS)}")
    chosen, skipped = [], []
    for name, module in model.named_modules():
        if not name or under(name, head_prefix) or type(module) not in TARGETS[target]:
            continue
        (skipped if getattr(module, "groups", 1) > 1 else chosen).append(name)
    return chosen, skipped


@register_strategy
class LoRA(Strategy):
    """Low-rank adapters (``peft``'s LoRA layers) on the backbone's Conv and Linear modules (chosen by exact
    module type, ``target``: ``conv_linear``, ``conv`` or ``linear``; not the head, not grouped
    convolutions); the adapters and the whole head train, every original backbone weight stays frozen.

    ``setup`` injects the adapters into ``ctx.model`` in place (``peft.inject_adapter_in_model``): an
    adapted module ``m`` becomes a LoRA wrapper holding the original as ``m.base_layer`` (its parameters are
    renamed ``m.base_layer.weight``, bit-identical) plus ``m.lora_A``/``m.lora_B``. lora_B starts at zero, so
    the adapted network computes exactly the original function at the start. ``ctx.backbone.blocks`` is
    updated to the new names (adapters join their module's block). Defaults: rank 8, alpha 16, dropout 0.

    The frozen backbone's BatchNorm layers run in eval mode (``frozen_eval``): their statistics stay the
    pretrained ones, so the backbone is unchanged apart from the adapters.
    """

    name = "lora"
    label = "LoRA"
    description = "LoRA (peft): rank-8 adapters on backbone conv/linear layers plus the head train."
    defaults = {"rank": 8, "alpha": 16, "dropout": 0.0, "target": "conv_linear"}

    def check(self, ctx: CellContext) -> str | None:
        chosen, skipped = target_modules(ctx.model, ctx.backbone.head_prefix, self.params["target"])
        if not chosen:
            return (f"{ctx.backbone.name} has no {self.params['target']} modules outside the head"
                    + (f" ({len(skipped)} grouped convolutions are not adapted)" if skipped else ""))
        return None

    def setup(self, ctx: CellContext) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        model, backbone = ctx.model, ctx.backbone
        chosen, skipped = target_modules(model, backbone.head_prefix, self.params["target"])
        config = LoraConfig(r=int(self.params["rank"]), lora_alpha=self.params["alpha"],
                            lora_dropout=float(self.params["dropout"]),
                            target_modules="^(" + "|".join(map(re.escape, chosen)) + ")$")
        dev = next(model.parameters()).device
        inject_adapter_in_model(config, model, adapter_name=ADAPTER)
        model.to(dev)
        if ctx.channels_last:
            model.to(memory_format=torch.channels_last)
        self._remap_blocks(ctx)
        adapters = set(self.adapters(ctx))
        self.log.update({"adapted_modules": len(chosen), "skipped_grouped_convs": len(skipped),
                         "adapter_params": sum(p.numel() for n, p in ctx.named_params().items() if n in adapters)})

    @staticmethod
    def _remap_blocks(ctx: CellContext) -> None:
        block_of = {p: b for b, ps in ctx.blocks for p in ps}
        order = [b for b, _ in ctx.blocks]
        new: dict[str, list[str]] = {b: [] for b in order}
        for n in ctx.param_names:
            old = n.replace(".base_layer.", ".")
            if ".lora_" in old:
                old = old.split(".lora_")[0] + ".weight"
            if old not in block_of:
                raise MedftError(f"lora: cannot place parameter {n} in a block")
            new[block_of[old]].append(n)
        ctx.backbone.blocks = [(b, new[b]) for b in order]

    def adapters(self, ctx: CellContext) -> list[str]:
        return [n for n in ctx.param_names if ".lora_" in n]

    @torch.no_grad()
    def effective_weights(self, ctx: CellContext) -> dict[str, torch.Tensor]:
        """Each adapted weight as W + (alpha/r) B A (peft's delta), the adapters themselves left out: the drift
        is how far the function's weights moved, not how far the adapters did (A starts random)."""
        out = {n: p.detach() for n, p in ctx.named_params().items() if ".lora_" not in n}
        for name, module in ctx.model.named_modules():
            if ADAPTER in getattr(module, "lora_A", {}) and hasattr(module, "get_delta_weight"):
                key = f"{name}.base_layer.weight"
                out[key] = out[key] + module.get_delta_weight(ADAPTER).to(out[key].dtype)
        return out

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {**self.params, "library": "peft", "adapted_modules": self.log.get("adapted_modules"),
                "head": "trains fully"}

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset([*self.adapters(ctx), *ctx.head_names]), norm_mode="frozen_eval")
