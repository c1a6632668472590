"""Per-batch preprocessing on the device: uint8 -> float, channels, resize or pad, normalise, augment.

Applied to whole batches of tensors (on the GPU when there is one), never per sample through PIL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from medft_bench.data.arrays import Split


@dataclass(frozen=True)
class Preprocess:
    """How images reach the backbone; recorded with every result."""

    target_size: int
    policy: str = "resize"  # "resize" (interpolate) or "pad" (zero-pad, MedMNIST+ style)
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channels: int = 3
    augment: bool = False  # random horizontal flip and small translation, training batches only

    def __post_init__(self) -> None:
        if self.policy not in ("resize", "pad"):
            raise ValueError(f"unknown preprocessing policy {self.policy!r}; use 'resize' or 'pad'")

    def describe(self) -> dict:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def __call__(self, images: torch.Tensor, *, train: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        x = images.float().div_(255.0)
        if x.shape[1] != self.channels:
            x = x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x[:, : self.channels]
        size = x.shape[-1]
        if size != self.target_size:
            if self.policy == "resize":
                smooth = self.interpolation in ("bilinear", "bicubic")  # the modes that take these options
                kw = {"align_corners": False, "antialias": True} if smooth else {}
                x = F.interpolate(x, size=(self.target_size, self.target_size), mode=self.interpolation, **kw)
            elif size < self.target_size:
                # Normalise first so that the zero padding is the mean colour, as MedMNIST+ pads images.
                x = self._normalise(x)
                lo = (self.target_size - size) // 2
                hi = self.target_size - size - lo
                x = F.pad(x, (lo, hi, lo, hi))
                return self._augment(x, generator) if train and self.augment else x
            else:
                raise ValueError(f"cannot pad {size} px images down to {self.target_size} px; use policy 'resize'")
        x = self._normalise(x)
        return self._augment(x, generator) if train and self.augment else x

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean[: x.shape[1]], device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std[: x.shape[1]], device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    @staticmethod
    def _augment(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)
        shift = int(round(x.shape[-1] * 0.05))
        if shift:
            dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        return x


def batch_indices(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                  drop_last: bool = False) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]


def iterate(split: Split, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
            device: torch.device | str = "cpu", drop_last: bool = False
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (uint8 images, labels) moved to ``device``; formed by indexing, not a DataLoader."""
    for idx in batch_indices(len(split), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last):
        yield (split.images[idx].to(device, non_blocking=True), split.labels[idx].to(device, non_blocking=True))
