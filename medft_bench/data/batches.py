"""Per-batch preprocessing on the device: uint8 -> float, channels, resize or pad, normalise, augment.

Applied to whole batches of tensors (on the GPU when there is one), never per sample through PIL.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from medft_bench.data.arrays import Split, to_channels_first


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
        """``(x / 255 - mean) / std`` per output channel, resized or padded to ``target_size``.

        The affine normalisation is one fused pass (``shift + x * scale``, the 1/255 folded into ``scale``,
        grey broadcast to three channels) done at the smaller of the two sizes: before upsampling
        (interpolation weights sum to one, so the two commute), after downsampling. On the CPU the resize
        is two matrix products with the interpolation's own weights (see ``_resize_matrix``), which is
        faster than ``F.interpolate`` there and gives the same values up to float rounding.
        """
        x = images.float()
        if x.shape[1] > self.channels:
            x = x[:, : self.channels]
        size = x.shape[-1]
        if size == self.target_size:
            x = self._normalise(x)
        elif self.policy == "resize":
            x = self._resize(self._normalise(x)) if size < self.target_size else self._normalise(self._resize(x))
        elif size < self.target_size:
            # Normalised first so that the zero padding is the mean colour, as MedMNIST+ pads images.
            x = self._normalise(x)
            lo = (self.target_size - size) // 2
            hi = self.target_size - size - lo
            x = F.pad(x, (lo, hi, lo, hi))
        else:
            raise ValueError(f"cannot pad {size} px images down to {self.target_size} px; use policy 'resize'")
        return self._augment(x, generator) if train and self.augment else x

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu":
            w = _resize_matrix(x.shape[-1], self.target_size, self.interpolation, x.device)
            return torch.matmul(w, torch.matmul(x, w.T))
        return _interpolate(x, self.target_size, self.interpolation)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """uint8-range values to normalised ones; one input channel is broadcast to ``channels``."""
        c = self.channels if x.shape[1] == 1 else x.shape[1]
        shift, scale = _affine(self.mean[:c], self.std[:c], x.device)
        return torch.addcmul(shift, x, scale)

    @staticmethod
    def _augment(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = x.shape[0]
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.to(x.device, non_blocking=True).view(-1, 1, 1, 1), x.flip(-1), x)
        shift = int(round(x.shape[-1] * 0.05))
        if shift:
            dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,), generator=generator))
            x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
        return x


def _interpolate(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    smooth = mode in ("bilinear", "bicubic")  # the modes that take these options
    kw = {"align_corners": False, "antialias": True} if smooth else {}
    return F.interpolate(x, size=(size, size), mode=mode, **kw)


@functools.lru_cache(maxsize=64)
def _resize_matrix(src: int, tgt: int, mode: str, device: torch.device) -> torch.Tensor:
    """(tgt, src): the weight of every input pixel in every output pixel along one axis.

    Every interpolation mode here is linear and separable, so resizing an image is ``W @ x @ W.T``; the
    weights are ``F.interpolate``'s own response to unit impulses, so the product reproduces it.
    """
    with torch.inference_mode(False):
        eye = torch.eye(src, device=device).view(src, 1, 1, src)
        return _interpolate_1d(eye, tgt, mode).view(src, tgt).T.contiguous()


def _interpolate_1d(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    smooth = mode in ("bilinear", "bicubic")
    kw = {"align_corners": False, "antialias": True} if smooth else {}
    return F.interpolate(x, size=(1, size), mode=mode, **kw)


@functools.lru_cache(maxsize=64)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``-mean/std`` and ``1/(255 std)`` as (1, C, 1, 1) tensors on ``device``, made once: building them per
    batch would copy host memory to the GPU every step, a host-device synchronisation in the training loop."""
    m = torch.tensor(mean, dtype=torch.float64)
    s = torch.tensor(std, dtype=torch.float64)
    with torch.inference_mode(False):  # ordinary tensors, usable with and without autograd
        return ((-m / s).float().view(1, -1, 1, 1).to(device), (1.0 / (255.0 * s)).float().view(1, -1, 1, 1).to(device))


def batch_indices(n: int, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                  drop_last: bool = False) -> Iterator[torch.Tensor]:
    """Index batches over ``n`` items. Shuffled (training) batches never end with a lone item: it joins the
    batch before it (batch-norm cannot train on one image, e.g. 96 images at batch 19), so every image is still
    seen once an epoch."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    starts = list(range(0, stop, batch_size))
    if shuffle and batch_size > 1 and len(starts) > 1 and stop - starts[-1] == 1:
        starts.pop()
    for i, start in enumerate(starts):
        yield order[start : starts[i + 1] if i + 1 < len(starts) else stop]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """How many shuffled training batches :func:`batch_indices` makes of ``n`` items (a lone last item joins
    the batch before it): the optimizer steps of one epoch."""
    steps = -(-n // batch_size)
    if batch_size > 1 and steps > 1 and n - (steps - 1) * batch_size == 1:
        steps -= 1
    return steps


def iterate(split: Split, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
            device: torch.device | str = "cpu", drop_last: bool = False
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of (uint8 (B, C, H, W) images, labels) on ``device``; formed by indexing, not a DataLoader.

    The images of a batch are gathered from the split's array (memory-mapped or in memory, see
    :meth:`Split.gather`) by a helper thread one batch ahead, so the next batch is read while the current one
    trains; on CUDA they are gathered into pinned memory and copied with ``non_blocking=True``. The copy to
    channels-first happens on the device. The order (the seeded shuffle) and the values are those of indexing
    a channels-first tensor of the whole split.
    """
    device = torch.device(device)
    pin = device.type == "cuda"
    batches = batch_indices(len(split), batch_size, shuffle=shuffle, generator=generator, drop_last=drop_last)

    def host_batch(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (len(idx), *split.pixels.shape[1:])
        staging = torch.empty(shape, dtype=torch.uint8, pin_memory=pin)
        split.gather(idx.numpy(), out=staging.numpy())
        labels = split.labels[idx]
        return staging, labels.pin_memory() if pin else labels

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="medft-batches") as pool:
            ahead: Future | None = None
            try:
                first = next(batches, None)
                if first is None:
                    return
                ahead = pool.submit(host_batch, first)
                while ahead is not None:
                    images, labels = ahead.result()
                    nxt = next(batches, None)
                    ahead = None if nxt is None else pool.submit(host_batch, nxt)
                    images = to_channels_first(images.to(device, non_blocking=True))
                    yield images, labels.to(device, non_blocking=True)
            finally:
                if ahead is not None:  # the consumer stopped early: let the batch in flight finish, then drop it
                    ahead.cancel()
    finally:
        split.release()  # a pass is over: none of the split's mapped pages stays in this process's resident set
