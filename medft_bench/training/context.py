"""What a strategy may see and use while its cell runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medft_bench.config import CellConfig, TrainSettings
from medft_bench.data.arrays import DataBundle
from medft_bench.data.batches import Preprocess, iterate, steps_per_epoch
from medft_bench.models.factory import Backbone
from medft_bench.vocabulary import primary_metric

if TYPE_CHECKING:
    from medft_bench.results.store import Store


@dataclass
class CellContext:
    cfg: CellConfig
    settings: TrainSettings
    data: DataBundle
    backbone: Backbone
    preprocess: Preprocess
    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    store: Store | None = None  # for strategies that reuse other cells' results (LP-FT's probe)
    epoch_generator: torch.Generator | None = None  # the current epoch's batch-order generator
    feature_cache: Any = None  # the cell's training.features.FeatureCache, set by the engine
    head_init: dict[str, Any] = field(default_factory=dict)  # how the new head started (models.head_init)
    _initial: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def monitor(self) -> str:
        """The validation metric that selects checkpoints and trials: the settings' ``monitor``, "auto" the
        task's primary metric (the one place it is resolved)."""
        return self.settings.monitor if self.settings.monitor != "auto" else primary_metric(self.data.task)

    @property
    def model(self) -> nn.Module:
        return self.backbone.model

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one training epoch (the batches the engine makes of the training split)."""
        return steps_per_epoch(len(self.data.train), self.settings.batch_size)

    @property
    def param_names(self) -> list[str]:
        return [n for n, _ in self.model.named_parameters()]

    @property
    def head_names(self) -> list[str]:
        return self.backbone.head_param_names()

    @property
    def blocks(self) -> list[tuple[str, list[str]]]:
        return self.backbone.blocks

    def named_params(self) -> dict[str, nn.Parameter]:
        return dict(self.model.named_parameters())

    def initial_params(self) -> dict[str, torch.Tensor]:
        """A detached copy of every parameter as it was before training (w0), taken on first use."""
        if self._initial is None:
            self._initial = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        return self._initial

    def apply_modes(self, norm_mode: str) -> None:
        """Train/eval modes for an epoch (see ``strategies.base.NORM_MODES``); ``requires_grad`` must be set."""
        model = self.model
        if norm_mode in ("backbone_eval", "eval"):
            # eval: the whole network in eval mode, dropout too (the Auto-RGN reference's ``train_mode: eval``)
            model.eval()
            if norm_mode == "backbone_eval":
                self.backbone.head.train()
            return
        model.train()
        if norm_mode == "train":
            return
        for m in model.modules():  # frozen_eval
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in m.parameters(recurse=False)):
                m.eval()

    @property
    def initial_snapshot(self) -> dict[str, torch.Tensor] | None:
        """w0 if ``initial_params`` has taken it, else None (nothing before the head has trained yet)."""
        return self._initial

    def autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to_input(self, images: torch.Tensor, *, train: bool = False) -> torch.Tensor:
        x = self.preprocess(images, train=train, generator=self.epoch_generator)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.data.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
        return nn.functional.cross_entropy(logits, labels)

    def train_batches(self, n_batches: int | None = None, *, generator: torch.Generator | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``n_batches`` preprocessed training batches in this epoch's order.

        The batches equal the epoch's first training batches (order and augmentation), drawn from a copy of
        the epoch's generator, so looking at them does not change the epoch that follows.
        """
        gen = generator
        if gen is None and self.epoch_generator is not None:
            gen = torch.Generator().set_state(self.epoch_generator.get_state())  # same order, not consumed
        for i, (images, labels) in enumerate(iterate(self.data.train, self.settings.batch_size, shuffle=True,
                                                     generator=gen, device=self.device)):
            if n_batches is not None and i >= n_batches:
                return
            x = self.preprocess(images, train=True, generator=gen)  # augment from the copy, as the epoch will
            yield (x.contiguous(memory_format=torch.channels_last) if self.channels_last else x), labels
