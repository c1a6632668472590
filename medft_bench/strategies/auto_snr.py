"""Auto-SNR (Lee et al., ICLR 2023): freeze, for one epoch, the tensors whose gradient signal-to-noise ratio
is below a threshold."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from medft_bench.strategies.base import EpochPlan, Stage, Strategy, check_norm_mode
from medft_bench.strategies.probed_head import ProbedHead
from medft_bench.strategies.registry import register_strategy
from medft_bench.strategies.selection import apply_modes, batch_gradients, candidate_names, probe_cut

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.training.context import CellContext

EPS = 1e-8
VARIANCES = ("per_example", "first_dim")
HEAD_STARTS = ("probe", "new")


def _snr(mean: torch.Tensor, var: torch.Tensor) -> float:
    return float((mean.pow(2) / (var + EPS)).mean())


def _per_example_chunks(ctx: CellContext, names: list[str], n_batches: int, chunk_size: int,
                        max_examples: int | None, impl: str) -> Iterator[dict[str, torch.Tensor]]:
    """Per-example gradients, ``chunk_size`` examples at a time: {name: (c, *shape)}."""
    model = ctx.model
    named = ctx.named_params()
    params = {n: named[n] for n in names}
    if impl == "vmap":
        params = {n: p.detach() for n, p in params.items()}
        from torch.func import functional_call, grad, vmap

        def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with ctx.autocast():
                out = functional_call(model, p, (x.unsqueeze(0),))
            return ctx.loss(out, y.unsqueeze(0))

        per_example = vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")
    count = 0
    for x, y in ctx.train_batches(n_batches):
        if max_examples is not None:
            if count >= max_examples:
                return
            x, y = x[: max_examples - count], y[: max_examples - count]
        for start in range(0, len(x), chunk_size):
            xs, ys = x[start : start + chunk_size], y[start : start + chunk_size]
            if impl == "vmap":
                yield per_example(params, xs, ys)
            else:
                for i in range(len(xs)):  # one example at a time: no stacking of gradients
                    with ctx.autocast():
                        out = model(xs[i : i + 1])
                    grads = torch.autograd.grad(ctx.loss(out, ys[i : i + 1]), list(params.values()),
                                                allow_unused=True)
                    yield {n: (torch.zeros_like(p) if g is None else g).unsqueeze(0)
                           for (n, p), g in zip(params.items(), grads)}
            count += len(xs)


def per_example_snr(ctx: CellContext, names: list[str], n_batches: int = 5, chunk_size: int = 8,
                    max_examples: int | None = None, impl: str = "auto") -> dict[str, float]:
    """SNR from per-example gradients over the examples of the epoch's first ``n_batches`` batches.

    Per tensor: mean over elements of g_mean^2 / (Var(g) + 1e-8), where g_mean and Var (unbiased) run over
    the examples. Per-example gradients come ``chunk_size`` at a time, from ``torch.func``
    (``vmap(grad(...))``, ``impl="vmap"``, the ``auto`` choice on CUDA) or from one backward pass per example
    (``impl="loop"``, the ``auto`` choice on CPU, where it is about twice as fast as vmap); they are merged
    into running means and variances (Chan et al.), so memory is ``chunk_size`` gradients at most.
    Normalisation layers run in eval mode (per-example gradients need fixed statistics). With fewer than 2
    examples the variance is undefined and every SNR is ``inf``.
    """
    if impl == "auto":
        impl = "vmap" if ctx.device.type == "cuda" else "loop"
    if impl not in ("vmap", "loop"):
        raise ValueError(f"impl must be auto, vmap or loop, got {impl!r}")
    named = ctx.named_params()
    apply_modes(ctx, "eval", frozenset(names))
    count = 0
    mean = {n: torch.zeros_like(named[n], dtype=torch.float32) for n in names}
    m2 = {n: torch.zeros_like(named[n], dtype=torch.float32) for n in names}
    scratch = {n: torch.empty_like(named[n], dtype=torch.float32) for n in names}
    for grads in _per_example_chunks(ctx, names, n_batches, chunk_size, max_examples, impl):
        nb = 0
        for n, g in grads.items():
            g = g.detach().float()
            nb = len(g)
            total = count + nb
            if nb == 1:  # Welford's update into one reusable buffer per tensor (no per-example temporaries; the
                # gradient itself is not written: autograd may return views that share storage, e.g. ViT tokens)
                delta = torch.sub(g[0], mean[n], out=scratch[n])  # x - mean_old
                mean[n].add_(delta, alpha=1 / total)
                m2[n].addcmul_(delta, delta, value=(total - 1) / total)  # x - mean_new = delta * (total - 1) / total
                continue
            mb = g.mean(0)  # Chan et al.'s merge of a chunk's mean and sum of squares
            m2b = (g - mb).pow_(2).sum(0)
            delta = mb - mean[n]
            mean[n].add_(delta, alpha=nb / total)
            m2[n].add_(m2b).addcmul_(delta, delta, value=count * nb / total)
        count += nb
    for p in named.values():
        p.grad = None
    if count < 2:
        return {n: float("inf") for n in names}
    return {n: _snr(mean[n], m2[n] / (count - 1)) for n in names}


def first_dim_statistic(g: torch.Tensor) -> float:
    """The reference code's SNR of one batch gradient: mean over elements of g^2 / (Var(g, dim 0) + 1e-8), the
    variance unbiased along the first dimension; ``inf`` where that dimension has fewer than 2 entries."""
    if g.ndim == 0 or g.shape[0] < 2:
        return float("inf")
    return _snr(g, torch.var(g, dim=0, keepdim=True))


def first_dim_snr(ctx: CellContext, names: list[str], n_batches: int = 5, norm_mode: str = "eval"
                  ) -> dict[str, float]:
    """The reference code's SNR: per batch gradient g, mean over elements of g^2 / (Var(g, dim 0) + 1e-8)
    (unbiased variance along the tensor's first dimension), averaged over the batches. A tensor with a
    single entry along its first dimension has no variance there: its SNR is ``inf``."""
    sums = {n: 0.0 for n in names}
    count = 0
    for grads in batch_gradients(ctx, names, n_batches, norm_mode):
        for n, g in zip(names, grads):
            sums[n] += first_dim_statistic(g)
        count += 1
    if count == 0:
        raise ValueError("Auto-SNR needs at least one training batch")
    return {n: v / count for n, v in sums.items()}


def gradient_snr(ctx: CellContext, names: list[str], *, variance: str = "per_example", n_batches: int = 5,
                 chunk_size: int = 8, max_examples: int | None = None, norm_mode: str = "eval", impl: str = "auto"
                 ) -> dict[str, float]:
    if variance == "per_example":
        return per_example_snr(ctx, names, n_batches, chunk_size, max_examples, impl)
    if variance == "first_dim":
        return first_dim_snr(ctx, names, n_batches, norm_mode)
    raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")


NOISE_MULTIPLE = 2.0  # per-example variant: a tensor trains when its SNR is at least twice pure noise's 1/n


@register_strategy
class AutoSNR(Strategy):
    """At every epoch start: per parameter tensor, the gradient's signal-to-noise ratio over the epoch's
    first ``n_batches`` (5) training batches; tensors whose SNR is below ``threshold`` are frozen for the
    epoch, the others train at the base learning rate, with Adam rebuilt every epoch (the reference code).

    ``variance="first_dim"`` (default): the statistic of Lee et al.'s reference code
    (``anniesch/surgical-finetuning``, ``get_lr_weights`` with ``auto_tune=eb-criterion``): for each batch's
    gradient g of a tensor, the mean over its elements of g^2 / (Var(g along the tensor's first dimension,
    unbiased) + 1e-8), averaged over the batches; threshold 0.95. A tensor with one entry along its first
    dimension has no variance there: the reference's NaN compares false with the threshold, so the tensor
    trains; here its SNR is ``inf`` (trains too).

    ``variance="per_example"``: the paper's wording (variance across inputs): mean and unbiased variance of
    the per-example gradients of the probed examples, then the mean over elements of mean^2 / (var + 1e-8)
    (``chunk_size`` examples at a time, from ``torch.func`` on CUDA or one backward per example on CPU,
    ``impl``; at most ``max_examples`` examples, None = all). Its scale differs: for a gradient that is pure
    noise, mean^2 / var is about 1/n over n examples, whatever the tensor. Its default threshold is therefore
    ``NOISE_MULTIPLE / n`` (2/n: the signal must at least match the noise of the mean), not 0.95, which
    would freeze nearly every tensor. A given ``threshold`` is used as is for either variant.

    A property of the reference statistic worth knowing: the mean of g^2 / Var(g, dim 0) is at least about
    (k - 1) / k for a first dimension of k entries, whatever the signal, so for tensors with k >= 20 the 0.95
    threshold is passed by nearly any gradient larger than the 1e-8 in the denominator: the choice is driven
    by the absolute gradient size as much as by its signal-to-noise ratio. With a new, small head the
    backbone's gradients are small in the first epoch and more tensors stay frozen then. The record's notes
    carry the smallest and median backbone statistic of every epoch.

    The head it starts from (``head``): ``"probe"`` (default), the linear probe's solved head, the ``lp`` cell's
    (reused from its stored record as LP-FT reuses it, else solved in the cell; its time is part of the cost),
    as a stage of no epochs before the adaptive one. The reference fine-tunes a head already trained for the
    labels, and its statistic needs one: the 1e-8 in the denominator makes it scale-dependent, and a new head
    (logit standard deviation 0.01) scales every backbone gradient down, so that in the first epoch nearly
    every backbone tensor falls below the threshold (official BreastMNIST, EfficientNet-Lite0: 3 of 49 tensors
    in epoch 0 from a new head, about 20 later). ``"new"`` starts from the suite's new head as every other
    strategy. An epoch in which no backbone tensor passed is noted (``adaptive_backbone_tensors`` 0) and the
    leaderboard flags the cell.

    Departures from the reference, recorded: the new head always trains (the reference fine-tuned a
    pretrained head of the same label space and could freeze it); normalisation parameters are chosen by
    module type (``norm_params="frozen"``: BatchNorm, GroupNorm, LayerNorm; the reference drops names
    containing "bn"). As the reference's ``train_mode: eval``, the whole network runs in eval mode while
    probing and training (``norm_mode="eval"``: BatchNorm statistics frozen, no dropout). Each epoch's record
    notes the threshold and how many tensors train, per block.
    """

    name = "auto_snr"
    label = "Auto-SNR"
    description = "Auto-SNR: per epoch, freeze tensors whose gradient signal-to-noise ratio is below 0.95."
    version = 2  # 2: starts from the probe's head (head="probe")
    defaults = {"head": "probe", "n_batches": 5, "threshold": None, "variance": "first_dim", "chunk_size": 8,
                "max_examples": None, "impl": "auto", "norm_params": "frozen", "norm_mode": "eval"}

    def incomplete(self, ctx: CellContext) -> str | None:
        return probe_cut(min(int(self.params["n_batches"]), ctx.steps_per_epoch))

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        p = self.params
        per_example = p["variance"] == "per_example"
        impl = p["impl"]
        if impl == "auto":
            impl = "vmap" if ctx.device.type == "cuda" else "loop"
        threshold = p["threshold"]
        if threshold is None:
            threshold = f"{NOISE_MULTIPLE:g}/n examples" if per_example else 0.95
        out = {"n_batches": p["n_batches"], "threshold": threshold, "variance": p["variance"],
               "norm_params": p["norm_params"], "norm_mode": p["norm_mode"], "variance_correction": "unbiased (n-1)",
               "eps": EPS, "optimizer_reset": "every epoch", "head": p["head"], "head_trains": "always",
               "source": "anniesch/surgical-finetuning get_lr_weights (eb-criterion)"}
        # Only the per-example variant uses these; None says so in the record.
        out.update(chunk_size=p["chunk_size"] if per_example else None,
                   max_examples=p["max_examples"] if per_example else None, impl=impl if per_example else None)
        if self._head is not None:
            out["lp"] = self._head.probe.hparams(ctx)
        return out

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["variance"] not in VARIANCES:
            raise ValueError(f"auto_snr: variance must be one of {VARIANCES}, got {self.params['variance']!r}")
        check_norm_mode(self.params["norm_mode"], "auto_snr: norm_mode")
        if self.params["head"] not in HEAD_STARTS:
            raise ValueError(f"auto_snr: head must be one of {HEAD_STARTS}, got {self.params['head']!r}")
        self._head = ProbedHead() if self.params["head"] == "probe" else None

    def reused_cells(self, cfg: CellConfig) -> tuple[CellConfig, ...]:
        return () if self._head is None else self._head.reused_cells(cfg)

    def check(self, ctx: CellContext) -> str | None:
        return None if self._head is None else self._head.probe.check(ctx)

    def stages(self, ctx: CellContext) -> list[Stage]:
        adaptive = super().stages(ctx)
        return adaptive if self._head is None else [self._head.stage(ctx), *adaptive]

    def start_stage(self, ctx: CellContext, stage: int) -> bool:
        return self._head is not None and stage == 0 and self._head.start(ctx, self)

    def snr(self, ctx: CellContext) -> dict[str, float]:
        names = candidate_names(ctx, self.params["norm_params"])
        p = self.params
        return gradient_snr(ctx, names, variance=p["variance"], n_batches=int(p["n_batches"]),
                            chunk_size=int(p["chunk_size"]), max_examples=p["max_examples"],
                            norm_mode=p["norm_mode"], impl=p["impl"])

    def threshold(self, ctx: CellContext) -> float:
        given = self.params["threshold"]
        if given is not None:
            return float(given)
        if self.params["variance"] != "per_example":
            return 0.95
        return NOISE_MULTIPLE / max(1, probed_examples(ctx, int(self.params["n_batches"]), self.params["max_examples"]))

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        if self._head is not None and stage == 0:
            return self._head.probe.plan(ctx, 0, epoch)
        norm_mode = self.params["norm_mode"]
        snr = self.snr(ctx)
        thr = self.threshold(ctx)
        trainable = {n for n, v in snr.items() if v >= thr} | set(ctx.head_names)
        block_of = {p: b for b, ps in ctx.blocks for p in ps}
        per_block: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for n in snr:
            per_block[block_of.get(n, "?")][0] += n in trainable
            per_block[block_of.get(n, "?")][1] += 1
        backbone = set(snr) - set(ctx.head_names)
        values = sorted(v for n, v in snr.items() if n in backbone)
        note = {"snr_threshold": thr,
                "snr_backbone_min": values[0] if values else None,
                "snr_backbone_median": values[len(values) // 2] if values else None,
                "snr_trainable_tensors": len(trainable),
                "snr_frozen_tensors": len(set(snr) - trainable),
                "snr_backbone_trainable_tensors": len(backbone & trainable),
                "adaptive_backbone_tensors": len(backbone & trainable),
                "snr_block_trainable": {b: f"{t}/{c}" for b, (t, c) in per_block.items()}}
        return EpochPlan(trainable=frozenset(trainable), norm_mode=norm_mode, reset_optimizer=True, note=note)


def probed_examples(ctx: CellContext, n_batches: int, max_examples: int | None) -> int:
    """How many training examples the first ``n_batches`` batches hold (capped at ``max_examples``)."""
    n = min(len(ctx.data.train), n_batches * ctx.settings.batch_size)
    return n if max_examples is None else min(n, int(max_examples))
