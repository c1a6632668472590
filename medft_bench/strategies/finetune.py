"""Full fine-tuning (FT) and linear probing (LP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.registry import register_strategy
from medft_bench.training.linear_probe import fit_linear_probe, strengths

if TYPE_CHECKING:
    from medft_bench.training.context import CellContext


@register_strategy
class FullFineTuning(Strategy):
    name = "ft"
    label = "FT"
    description = "Full fine-tuning: every parameter trains with one learning rate."
    in_study = True
    # norm_mode="eval": FT with BatchNorm statistics frozen and dropout off, the bundle LP-FT, Auto-RGN and Auto-SNR
    # train in; the control that separates their method from their norm mode (records name it in hparams).
    defaults = {"norm_mode": "train"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["norm_mode"] not in ("train", "eval"):  # refused before any cell runs
            raise ValueError(f"FT's norm_mode must be 'train' or 'eval', got {self.params['norm_mode']!r}")

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(ctx.param_names), norm_mode=self.params["norm_mode"])


@register_strategy
class FullFineTuningEvalNorm(FullFineTuning):
    """FT in the norm mode LP-FT, Auto-RGN and Auto-SNR train in (BatchNorm statistics frozen, dropout off): the
    control that tells their method from their norm mode. The same as ``ft`` with ``norm_mode=eval``, registered
    under its own name so that it is a row of its own beside FT (a parameter would make it the same cell)."""

    name = "ft_eval"
    label = "FT (eval BN)"
    description = "FT with BatchNorm statistics frozen and dropout off: the norm-mode control for LP-FT/Auto-RGN/SNR."
    in_study = False
    defaults = {"norm_mode": "eval"}


@register_strategy
class LinearProbe(Strategy):
    """The backbone is frozen and runs in eval mode; only the new head trains, on features computed once
    per image (``training/features.py``).

    ``solver="lbfgs"`` (default): the head is the solution of the convex probe problem, not an approximation
    of it: L2-regularised logistic regression on standardised features, fitted to convergence (Newton-CG on
    a reduced basis, to a relative distance ``tol`` from the optimum; the option keeps its historical name
    ``lbfgs``) for each of ``l2_steps`` log-spaced strengths in [``l2_min``, ``l2_max``], the strength chosen
    on the validation split by the engine's checkpoint key (the monitored metric, ties by the other metric),
    the standardisation folded back into the ``Linear`` head (``training/linear_probe.py``; the protocol of
    Kumar et al. 2022 and of CLIP's probes). The stage has no epochs; ``log["lp"]`` records the chosen
    strength, the iterations, the estimated relative distance to the optimum, the final largest gradient
    entry and every strength's validation score.

    ``solver="adam"``: the study's probe, trained epoch by epoch like every other strategy (the settings'
    optimizer, learning rate, schedule and early stopping). It can stop far from the optimum on
    unnormalised features: the kNN probe on the same features is the reference to compare with.
    """

    name = "lp"
    version = 2  # 2: Newton-CG on a reduced basis with a relative convergence rule (was L-BFGS, absolute)
    label = "LP"
    description = "Linear probing: frozen backbone; the head solved to convergence on cached features (Newton-CG)."
    in_study = True
    defaults = {"solver": "lbfgs", "l2_min": 1e-6, "l2_max": 1e2, "l2_steps": 17, "max_iter": 1000, "tol": 1e-6}
    SOLVERS = ("lbfgs", "adam")

    def tuning_grid(self) -> tuple[float, ...]:
        # The solved probe has no learning rate (its L2 strength is already chosen on validation); the study's
        # Adam probe does.
        return self.lr_grid if self.params["solver"] == "adam" else ()

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        p = self.params
        if p["solver"] == "adam":  # the grid's settings do not apply: None says so in the record
            return {"solver": "adam", "epochs": ctx.settings.epochs, "lr": ctx.settings.lr,
                    **{k: None for k in self.defaults if k != "solver"}}
        return {"solver": "lbfgs", "l2_min": float(p["l2_min"]), "l2_max": float(p["l2_max"]),
                "l2_steps": int(p["l2_steps"]), "max_iter": int(p["max_iter"]), "tol": float(p["tol"]),
                "loss": "sigmoid per label" if ctx.data.multi_label else "softmax cross-entropy",
                "features": "standardised on train, folded into the head", "selection": "validation"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.params["solver"] not in self.SOLVERS:
            raise ValueError(f"lp: solver must be one of {self.SOLVERS}, got {self.params['solver']!r}")

    def check(self, ctx: CellContext) -> str | None:
        head = ctx.backbone.head
        if self.params["solver"] == "lbfgs" and not (isinstance(head, nn.Linear) and head.bias is not None):
            return (f"the L-BFGS probe needs a Linear head with a bias; {ctx.backbone.name}'s is "
                    f"{type(head).__name__} (use solver=adam)")
        return None

    def stages(self, ctx: CellContext) -> list[Stage]:
        s = ctx.settings
        return [Stage("lp", s.epochs if self.params["solver"] == "adam" else 0, s.lr)]

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset(ctx.head_names), norm_mode="backbone_eval")

    def start_stage(self, ctx: CellContext, stage: int) -> bool:
        if self.params["solver"] == "adam":
            return False
        self.log["lp"] = solve_head(ctx, self.params)
        return True


def solve_head(ctx: CellContext, params: dict[str, Any]) -> dict[str, Any]:
    """Fit ``ctx``'s head by the L-BFGS probe (``params`` as ``LinearProbe``'s) and load it; return the log."""
    # Here, not on top: metrics.py imports scikit-learn, which only the probe's solve needs
    from medft_bench.metrics import compute_metrics, selection_key

    cache = ctx.feature_cache
    data = ctx.data
    monitor = ctx.monitor
    val_labels = data.val.labels.numpy()

    def score(logits: torch.Tensor) -> tuple[float, ...]:
        probs = torch.sigmoid(logits) if data.multi_label else torch.softmax(logits, 1)
        return selection_key(compute_metrics(data.task, val_labels, probs.cpu().numpy()), monitor)

    head = ctx.backbone.head
    fit = fit_linear_probe(cache.get("train"), data.train.labels, cache.get("val"), head.out_features,
                           multi_label=data.multi_label, score=score,
                           grid=strengths(float(params["l2_min"]), float(params["l2_max"]), int(params["l2_steps"])),
                           max_iter=int(params["max_iter"]), tol=float(params["tol"]))
    with torch.no_grad():
        head.weight.copy_(fit.weight.to(head.weight))
        head.bias.copy_(fit.bias.to(head.bias))
    return {**fit.info, "monitor": monitor}
