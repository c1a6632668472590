"""The linear probe solved, not approximated: L2-regularised logistic regression on frozen features.

The protocol of Kumar et al. (LP-FT, ICLR 2022) and of CLIP's linear probes: features standardised on the
training split (centred per feature, divided by one global scale), a full-batch convex fit (L-BFGS with a
strong-Wolfe line search, float64) for every L2 strength of a log-spaced grid, the strength chosen on the
validation split, the standardisation folded back into a plain ``Linear`` head. Multinomial (softmax) loss
for single-label tasks, one sigmoid per label for multi-label tasks: the training loss of
``CellContext.loss``, so the solution minimises the very loss the epoch-by-epoch probe descends.

Objective for strength lam, on standardised features z: mean loss(z W^T + b, y) + lam/2 ||W||^2 (the bias
is not penalised). The grid runs from the strongest strength to the weakest, each fit warm-started from the
previous solution; ties on the validation key keep the stronger regularisation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

DTYPE = torch.float64


@dataclass
class ProbeFit:
    """The chosen head in the original feature space (``weight`` (C, d), ``bias`` (C,)), and how it was found."""

    weight: torch.Tensor
    bias: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def strengths(l2_min: float, l2_max: float, steps: int) -> list[float]:
    """``steps`` log-spaced L2 strengths from ``l2_max`` down to ``l2_min``."""
    if not (0 < l2_min <= l2_max) or steps < 1:
        raise ValueError(f"need 0 < l2_min <= l2_max and steps >= 1, got {l2_min}, {l2_max}, {steps}")
    if steps == 1:
        return [float(l2_max)]
    lo, hi = math.log10(l2_min), math.log10(l2_max)
    return [10 ** (hi - (hi - lo) * i / (steps - 1)) for i in range(steps)]


def standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean of ``x`` and one global scale: the root mean square of the centred features.

    Why one scale and not one per feature: the L2 penalty on weights of per-feature standardised inputs is a
    penalty of s_j^2 w_j^2 on the original weights, so a feature of tiny variance can take an unbounded
    weight. Folded back, such weights amplify any later change of that feature: LP-FT's second stage, whose
    first steps move the features (BatchNorm switching to batch statistics), started at a training loss of
    715 for two classes. One global scale keeps the penalty the plain L2 of Kumar et al.'s and CLIP's probes
    and still puts the problem on a unit scale for L-BFGS."""
    mean = x.mean(0)
    scale = (x - mean).pow(2).mean().sqrt()
    if not torch.isfinite(scale) or float(scale) <= 0:
        scale = torch.ones((), dtype=x.dtype, device=x.device)
    return mean, scale


def data_loss(logits: torch.Tensor, y: torch.Tensor, multi_label: bool) -> torch.Tensor:
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))
    return F.cross_entropy(logits, y)


def objective(w: torch.Tensor, b: torch.Tensor, z: torch.Tensor, y: torch.Tensor, multi_label: bool,
              lam: float) -> torch.Tensor:
    """The regularised probe objective on standardised features ``z``."""
    return data_loss(z @ w.T + b, y, multi_label) + 0.5 * lam * w.pow(2).sum()


def fit_strength(z: torch.Tensor, y: torch.Tensor, multi_label: bool, lam: float, w0: torch.Tensor,
                 b0: torch.Tensor, max_iter: int, tol: float) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Minimise ``objective`` from (w0, b0) with full-batch L-BFGS; the result's largest absolute gradient entry
    (``grad_max``) says how close to the optimum it stopped (the problem is convex: 0 at the optimum)."""
    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, max_eval=max_iter * 2, tolerance_grad=tol,
                            tolerance_change=1e-15, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        f = objective(w, b, z, y, multi_label, lam)
        f.backward()
        return f

    opt.step(closure)
    f = closure()
    grad_max = max(float(w.grad.abs().max()), float(b.grad.abs().max()))
    n_iter = int(opt.state[opt._params[0]].get("n_iter", 0))
    return w.detach(), b.detach(), {"iterations": n_iter, "objective": float(f.detach()), "grad_max": grad_max,
                                    "converged": grad_max <= tol}


def fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, n_classes: int, *,
                     multi_label: bool, score: Callable[[torch.Tensor], tuple[float, ...]],
                     grid: list[float], max_iter: int = 1000, tol: float = 1e-6) -> ProbeFit:
    """Fit one probe per L2 strength of ``grid`` on the training features and keep the one whose validation
    logits score best by ``score`` (a key; higher is better, e.g. the engine's checkpoint-selection key).

    ``n_classes`` is the number of outputs: classes, or labels for multi-label tasks.
    """
    t0 = time.perf_counter()
    dev = train_x.device
    x = train_x.to(DTYPE)
    mean, scale = standardise(x)
    z = (x - mean) / scale
    zv = (val_x.to(device=dev, dtype=DTYPE) - mean) / scale
    y = train_y.to(dev)
    if not multi_label:
        y = y.long().view(-1)
    w = torch.zeros(n_classes, z.shape[1], dtype=DTYPE, device=dev)
    b = torch.zeros(n_classes, dtype=DTYPE, device=dev)
    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, ...], int, torch.Tensor, torch.Tensor] | None = None
    for i, lam in enumerate(grid):
        w, b, info = fit_strength(z, y, multi_label, lam, w, b, max_iter, tol)
        key = score((zv @ w.T + b).float())
        trials.append({"l2": lam, "val_key": list(key), **info})
        if best is None or key > best[0]:
            best = (key, i, w, b)
    assert best is not None
    key, i, ws, bs = best
    weight = ws / scale  # fold the standardisation into the head: W z + b = (W / s) x + (b - (W / s) mean)
    bias = bs - weight @ mean
    chosen = trials[i]
    info = {"solver": "lbfgs", "l2": chosen["l2"], "iterations": chosen["iterations"],
            "grad_max": chosen["grad_max"], "converged": chosen["converged"], "objective": chosen["objective"],
            "val_key": chosen["val_key"], "total_iterations": sum(t["iterations"] for t in trials),
            "grid": trials, "seconds": time.perf_counter() - t0}
    return ProbeFit(weight, bias, info)
