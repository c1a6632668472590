"""The engine: :func:`build_context` (data, backbone, strategy: everything a cell needs before training) and
:class:`Trainer` (*train*: the strategy's stages and epochs, early stopping, evaluation, measured as it goes).

Data flows one way: data -> backbone -> strategy -> train/early-stop/evaluate -> a typed outcome
(``training.outcome.CellRun``, put together by the protocol's sweep, :func:`medft_bench.training.tuning.sweep`).
The engine asks the strategy questions (stages, per-epoch plans, extra loss); it never asks which strategy it is.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from medft_bench.config import CellConfig, effective_precision
from medft_bench.data.batches import Preprocess, batch_indices, iterate
from medft_bench.data.sources import load_dataset
from medft_bench.errors import MedftError, NotApplicable
from medft_bench.metrics import compute_metrics, selection_key, tie_break_metric
from medft_bench.models.calibration import calibrate
from medft_bench.models.factory import create_backbone_reusing
from medft_bench.models.head_init import init_head
from medft_bench.run_env import RunEnv
from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.registry import create_strategy
from medft_bench.training.context import CellContext
from medft_bench.training.features import FeatureCache
from medft_bench.training.measurements import Measurements, sync_device
from medft_bench.training.progress import EpochProgress


class Diverged(Exception):
    def __init__(self, epoch: int, stage: str) -> None:
        super().__init__(f"loss became non-finite in epoch {epoch} of stage {stage!r}")
        self.epoch, self.stage = epoch, stage


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block, restored after. A cell's numbers depend on the
    count (oneDNN splits its reductions by thread), so every front end computes a cell at its settings'
    ``threads`` whatever the process had (a Ray or Slurm task's CPUs, OMP_NUM_THREADS, torch's default)."""
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _epoch_generator(seed: int, stage: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 1_009 + epoch)


def _cosine(epoch: int, epochs: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))


# One multi-tensor kernel per step instead of a Python loop over tensors. On a 2-core CPU, Adam's step over
# VGG-19's 139 M parameters takes 0.13 s fused against 0.64 s looped (benchmarks/perf/bench_optimizer.py).
_IMPLS: dict[str, dict[str, bool]] = {"fused": {"fused": True}, "foreach": {"foreach": True},
                                      "loop": {"foreach": False}}


class Trainer:
    """Trains a cell's strategy stage by stage and evaluates it, measuring as it goes (``measured``)."""

    def __init__(self, ctx: CellContext, strategy: Strategy, progress: EpochProgress,
                 shared_features: dict[str, torch.Tensor] | None = None) -> None:
        self.ctx, self.strategy, self.progress = ctx, strategy, progress
        self.measured = Measurements()
        self.monitor = ctx.monitor
        self.opt: torch.optim.Optimizer | None = None
        self.opt_key: tuple | None = None
        self.cache = FeatureCache(ctx, shared=shared_features)
        # Each split's probabilities at its latest evaluation: after training, the kept model's (the record's
        # per-image predictions)
        self.latest_scores: dict[str, np.ndarray] = {}
        ctx.feature_cache = self.cache  # shared with strategies that read features (the kNN probe)

    # -- optimizer -------------------------------------------------------------------------------------
    def _optimizer(self, plan: EpochPlan) -> torch.optim.Optimizer:
        s = self.ctx.settings
        params = self.ctx.named_params()
        scales: dict[float, list[nn.Parameter]] = {}
        for n in sorted(plan.trainable, key=list(params).index):
            scales.setdefault(float(plan.lr_scale.get(n, 1.0)), []).append(params[n])
        groups = [{"params": ps, "scale": sc} for sc, ps in scales.items() if sc > 0]
        key = (tuple(sorted(plan.trainable)), tuple(sorted((k, v) for k, v in plan.lr_scale.items())))
        if self.opt is not None and key == self.opt_key and not plan.reset_optimizer:
            return self.opt
        impl = _IMPLS.get(s.optimizer_impl)
        if impl is None:
            raise MedftError(f"unknown optimizer_impl {s.optimizer_impl!r}; use one of {', '.join(_IMPLS)}")
        if s.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=s.lr, weight_decay=s.weight_decay, **impl)
        elif s.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=s.lr, weight_decay=s.weight_decay, **impl)
        elif s.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, **impl)
        else:
            raise MedftError(f"unknown optimizer {s.optimizer!r}; use adam, adamw or sgd")
        if self.opt is not None and not plan.reset_optimizer:
            for p, state in self.opt.state.items():  # keep moments of parameters that keep training
                if any(p is q for g in groups for q in g["params"]):
                    opt.state[p] = state
        self.opt, self.opt_key = opt, key
        return opt

    # -- one epoch -------------------------------------------------------------------------------------
    def _head_only(self, plan: EpochPlan) -> bool:
        return (plan.norm_mode == "backbone_eval" and not self.ctx.settings.augment and not plan.switches
                and set(plan.trainable) <= set(self.ctx.head_names))

    def _apply(self, plan: EpochPlan, lr: float) -> torch.optim.Optimizer:
        """Make ``plan`` the one training: what requires gradients, the modules' modes, the optimizer at ``lr``."""
        ctx = self.ctx
        named = ctx.named_params()
        trainable = set(plan.trainable)
        for n, p in named.items():
            p.requires_grad_(n in trainable)
        ctx.apply_modes(plan.norm_mode)
        if not trainable <= set(ctx.head_names):
            ctx.initial_params()  # theta0 for the drift; nothing before the head has trained before this plan
        opt = self._optimizer(plan)
        for g in opt.param_groups:
            g["lr"] = lr * g["scale"]
        n_train = sum(p.numel() for n, p in named.items() if n in trainable)
        self.measured.max_trainable = max(self.measured.max_trainable, n_train)
        return opt

    def train_epoch(self, plan: EpochPlan, lr: float, gen: torch.Generator) -> float:
        ctx = self.ctx
        opt = self._apply(plan, lr)
        switches = dict(plan.switches)  # plans that take over at a step of this epoch
        cached = self._head_only(plan)
        if cached and not self.cache.active:
            sync_device(ctx.device)
            t0 = time.perf_counter()
            self.cache.get("train")
            sync_device(ctx.device)
            self.measured.feature_s += time.perf_counter() - t0
        sync_device(ctx.device)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=ctx.device)
        steps = 0
        if cached:
            self.measured.cached_feature_epochs += 1
            feats, labels = self.cache.get("train"), ctx.data.train.labels.to(ctx.device)
            head = ctx.backbone.head
            for idx in batch_indices(len(feats), ctx.settings.batch_size, shuffle=True, generator=gen):
                idx = idx.to(ctx.device, non_blocking=True)
                loss = ctx.loss(head(feats[idx]), labels[idx])
                loss_sum += self._step(opt, loss)
                steps += 1
        else:
            self.cache.clear()
            timing = ctx.settings.compile and len(self.measured.first_steps_s) < 2
            for images, labels in iterate(ctx.data.train, ctx.settings.batch_size, shuffle=True, generator=gen,
                                          device=ctx.device):
                if steps in switches:
                    opt = self._apply(switches[steps], lr)
                if timing:  # the first two steps of a compiled cell only: their difference is compile time
                    sync_device(ctx.device)
                    ts = time.perf_counter()
                x = ctx.to_input(images, train=True)
                with ctx.autocast():
                    logits = ctx.model(x)
                loss_sum += self._step(opt, ctx.loss(logits, labels))
                steps += 1
                if timing:
                    sync_device(ctx.device)
                    self.measured.first_steps_s.append(time.perf_counter() - ts)
                    timing = len(self.measured.first_steps_s) < 2
        mean_loss = float(loss_sum) / max(1, steps)  # the one host sync of the epoch
        sync_device(ctx.device)
        self.measured.train_s += time.perf_counter() - t0
        self.measured.train_images += len(ctx.data.train)
        return mean_loss

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor) -> torch.Tensor:
        reg = self.strategy.regularizer(self.ctx)
        total = loss if reg is None else loss + reg
        opt.zero_grad(set_to_none=True)
        total.backward()
        penalty = self.strategy.add_penalty_grad(self.ctx)
        opt.step()
        return total.detach() if penalty is None else total.detach() + penalty

    # -- evaluation ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def scores(self, split: str) -> np.ndarray:
        ctx = self.ctx
        model = ctx.model
        was = model.training
        model.eval()
        out = []
        try:
            if self.cache.active:
                logits = ctx.backbone.head(self.cache.get(split)).float()
                out.append(logits)
            else:
                for images, _ in iterate(ctx.data.split(split), ctx.settings.eval_batch_size, device=ctx.device):
                    with ctx.autocast():
                        out.append(model(ctx.to_input(images)).float())
        finally:
            model.train(was)
        logits = torch.cat(out)
        probs = torch.sigmoid(logits) if ctx.data.multi_label else torch.softmax(logits, 1)
        return probs.cpu().numpy()

    def evaluate(self, split: str) -> dict[str, Any]:
        sync_device(self.ctx.device)
        t0 = time.perf_counter()
        labels = self.ctx.data.split(split).labels.numpy()
        self.latest_scores[split] = scores = self.scores(split)
        m = compute_metrics(self.ctx.data.task, labels, scores)
        sync_device(self.ctx.device)
        self.measured.eval_s += time.perf_counter() - t0
        return m

    # -- the cell --------------------------------------------------------------------------------------
    def drift(self) -> float:
        """||theta - theta0|| / ||theta0|| over every weight before the head (0 when none has trained), on the
        weights the network computes with (``Strategy.effective_weights``)."""
        ctx = self.ctx
        initial = ctx.initial_snapshot
        if initial is None:
            return 0.0
        head = set(ctx.head_names)
        named = self.strategy.effective_weights(ctx)
        names = [n for n in initial if n not in head and n in named]
        if not names:
            return 0.0
        now = [named[n].float() for n in names]
        start = [initial[n].float() for n in names]
        diff = torch.stack(torch._foreach_norm(torch._foreach_sub(now, start))).pow(2).sum().sqrt()
        base = torch.stack(torch._foreach_norm(start)).pow(2).sum().sqrt()
        return float(diff / base) if float(base) > 0 else 0.0

    def _timed(self, attr: str, fn: Any, *args: Any) -> Any:
        sync_device(self.ctx.device)
        t0 = time.perf_counter()
        out = fn(*args)
        sync_device(self.ctx.device)
        setattr(self.measured, attr, getattr(self.measured, attr) + time.perf_counter() - t0)
        return out

    def train(self) -> None:
        """Every stage of the strategy: epochs, early stopping, the best checkpoint restored. Touches the
        training and validation splits only (the tuned protocol's trials rely on it)."""
        ctx, strategy = self.ctx, self.strategy
        for si, stage in enumerate(strategy.stages(ctx)):
            before = sum(self.cache.seconds.values())
            done = self._timed("fit_s", strategy.start_stage, ctx, si)
            extracted = sum(self.cache.seconds.values()) - before  # features a solve needed: extraction time
            self.measured.fit_s -= extracted
            self.measured.feature_s += extracted
            if done:
                self.measured.epochs.append({"stage": stage.name, "epochs": 0, **strategy.log.get(stage.name, {})})
                solved = strategy.plan(ctx, si, 0).trainable  # what the stage set (the probe's head)
                n = sum(p.numel() for name, p in ctx.named_params().items() if name in solved)
                self.measured.trainable_per_stage[stage.name] = n
                self.measured.max_trainable = max(self.measured.max_trainable, n)
                self.measured.drift[stage.name] = self.drift()
                continue
            best_key: tuple[float, float] = (-math.inf, -math.inf)
            best_state, bad, best_epoch = None, 0, -1
            if stage.eval_at_start and stage.first_candidate == 0:
                # The state the stage starts from is a checkpoint of the run like any epoch's: when no epoch
                # beats it on validation, it is the one kept (best epoch -1), and the record says so.
                val = self.evaluate("val")
                self.measured.epochs.append({"stage": stage.name, "start": True, "val": val})
                best_key = selection_key(val, self.monitor)
                best_state = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
            for e in range(stage.epochs):
                gen = _epoch_generator(ctx.cfg.seed, si, e)
                ctx.epoch_generator = gen
                plan = self._timed("probe_s", strategy.plan, ctx, si, e)
                lr = stage.lr * (_cosine(e, stage.epochs) if ctx.settings.scheduler == "cosine" else 1.0)
                loss = self.train_epoch(plan, lr, gen)
                if not math.isfinite(loss):
                    raise Diverged(len(self.measured.epochs), stage.name)
                named = ctx.named_params()
                self.measured.trainable_per_stage[stage.name] = max(
                    self.measured.trainable_per_stage.get(stage.name, 0),
                    *(sum(p.numel() for n, p in named.items() if n in q.trainable) for q in plan.plans()))
                val = self.evaluate("val")
                key = selection_key(val, self.monitor)
                self.measured.epochs.append({"stage": stage.name, "epoch": e, "lr": lr, "train_loss": loss,
                                      "val": val, "trainable_tensors": len(plan.plans()[-1].trainable),
                                      "norm_mode": plan.norm_mode, "cached_features": self._head_only(plan),
                                      **plan.note})
                self.progress.epoch(stage.name, loss, self.monitor, key[0], self.measured.train_images)
                if e < stage.first_candidate:
                    pass  # not a candidate yet (the method has not done what it says): neither best nor worse
                elif key > best_key:
                    t0 = time.perf_counter()
                    best_key, bad, best_epoch = key, 0, e
                    best_state = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
                    self.measured.select_s += time.perf_counter() - t0
                else:
                    bad += 1
                if (stage.early_stopping and ctx.settings.patience and bad >= ctx.settings.patience
                        and e + 1 >= stage.min_epochs):
                    break
            if best_state is not None:
                t0 = time.perf_counter()
                ctx.model.load_state_dict(best_state)
                self.measured.select_s += time.perf_counter() - t0
                self.measured.best[stage.name] = {"epoch": best_epoch, f"val_{self.monitor}": best_key[0],
                                           "tie_break": f"val_{tie_break_metric(self.monitor)}"}
            self.measured.drift[stage.name] = self.drift()


def build_context(cfg: CellConfig, env: RunEnv | None = None) -> tuple[CellContext, Strategy]:
    """Load data, build the backbone and strategy: everything a cell needs before training."""
    env = env or RunEnv()
    s = cfg.train
    strategy = create_strategy(cfg.strategy, **cfg.params())
    data = load_dataset(cfg.dataset, cfg.img_size, synthetic_data=cfg.synthetic, root=env.data_root,
                        synthetic_splits=dict(cfg.synthetic_splits) or None, download=env.download,
                        mirror=env.medmnist_url)
    if s.max_train_samples:
        # Each seed draws its own subset (subset_seed "cell"): which images train is part of the seed's noise.
        data.train = data.train.subset(s.max_train_samples, seed=cfg.subset_seed)
        data.train_subset = {"seed": cfg.subset_seed, "n": len(data.train),
                             "indices_sha256": data.train.rows_sha256()}
    seed_everything(cfg.seed)
    backbone = create_backbone_reusing(cfg.backbone, data.n_classes, cfg.weights)
    dev = resolve_device(env.device)
    precision = effective_precision(s.amp, dev.type)
    if cfg.precision and cfg.precision != precision:  # its hash says another arithmetic: never file it under that
        raise MedftError(f"{cfg.cell_id}: resolved for {cfg.precision} (amp={s.amp}) but it would train in "
                          f"{precision} on {dev}; run it where its device is, or give --amp bf16 or --amp off")
    use_amp = precision == "bf16"
    channels_last = s.channels_last == "on" or (s.channels_last == "auto" and dev.type == "cuda")
    backbone.model.to(dev)
    if channels_last:
        backbone.model.to(memory_format=torch.channels_last)
    if s.compile:
        # In place (nn.Module.compile): parameter names, state dicts and the head stay as they are. The
        # compilation itself happens at the first call; costs["compile_s"] reports it.
        backbone.model.compile()
    pre = Preprocess(target_size=backbone.target_size(data.image_size, s.input_size), policy=s.preprocess,
                     interpolation=s.interpolation, mean=backbone.mean, std=backbone.std, augment=s.augment)
    ctx = CellContext(cfg=cfg, settings=s, data=data, backbone=backbone, preprocess=pre, device=dev,
                      amp_dtype=torch.bfloat16 if use_amp else None, channels_last=channels_last, store=env.store)
    if cfg.weights == "random":
        done = calibrate(ctx, s.random_calibration)
        if done:
            backbone.weights["calibration"] = done
    reason = strategy.check(ctx)
    if reason:
        raise NotApplicable(f"{cfg.cell_id}: strategy {cfg.strategy!r} does not apply: {reason}")
    ctx.head_init = init_head(ctx)
    return ctx, strategy


def preparation_s(ctx: CellContext) -> float:
    """Seconds of the forward passes that prepared the cell: a random backbone's calibration and the new
    head's scale (counted as probing, part of the training cost)."""
    return ctx.head_init.get("seconds", 0.0) + ctx.backbone.weights.get("calibration", {}).get("seconds", 0.0)
