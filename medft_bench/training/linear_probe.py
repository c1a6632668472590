"""The linear probe solved, not approximated: L2-regularised logistic regression on frozen features.

The protocol of Kumar et al. (LP-FT, ICLR 2022) and of CLIP's linear probes: features standardised on the
training split (centred per feature, divided by one global scale), a full-batch convex fit (float64) for
every L2 strength of a log-spaced grid, the strength chosen on the validation split, the standardisation
folded back into a plain ``Linear`` head. Multinomial (softmax) loss for single-label tasks, one sigmoid per
label for multi-label tasks: the training loss of ``CellContext.loss``, so the solution minimises the very
loss the epoch-by-epoch probe descends.

Objective for strength lam, on standardised features z: mean loss(z W^T + b, y) + lam/2 ||W||^2 (the bias
is not penalised). The grid runs from the strongest strength to the weakest, each fit warm-started from the
previous solution; ties on the validation key keep the stronger regularisation. Every strength is fitted
(no early exit along the path).

How it is solved (the same optimum as any convex solver, faster): (1) a reduced basis: the optimum lies in
the row space of z (``reduced_basis``), so the fit runs on the r <= min(n, d) principal coordinates of the
features that vary on the training split (EfficientNet-Lite0 at 32 px: 272 of 1,280 features vary on
BreastMNIST, rank 235); (2) two classes fit as one sigmoid (the softmax optimum is W = [-u/2, u/2]: the same
objective in half the parameters); (3) Newton's method with a backtracking line search, each Newton system
solved by conjugate gradients preconditioned by the exact data Hessian of a nearby point (rebuilt once CG
needs more than ``REBUILD_CG`` steps, factorised once per strength; the Hessian's diagonal where the
parameters exceed ``DENSE_MAX``). The stopping rule is relative: the Newton step estimates the distance to
the optimum, and a strength is ``converged`` when it is at most ``tol`` (1e-6) of the parameters' norm
(``rel_dist``); ``gap`` (g^T H^-1 g / 2) estimates the objective's excess over the optimum and ``grad_max``
is the largest gradient entry on the full features. The former absolute rule (largest gradient entry <=
1e-6, ``fit_strength``, kept as the reference L-BFGS solver) passed 3-12 % from the optimum at strengths
<= 1e-5 and never reported a non-converged fit.
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
    """Minimise ``objective`` from (w0, b0) with full-batch L-BFGS (the reference solver: ``fit_linear_probe``
    uses ``fit_newton`` on a reduced basis); ``grad_max`` is the result's largest absolute gradient entry and
    ``converged`` says whether it is at most ``tol``: an absolute test, which at small strengths passes far
    from the optimum."""
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


def reduced_basis(z: torch.Tensor, rtol: float = 1e-10) -> tuple[torch.Tensor, torch.Tensor]:
    """The features that vary on the training split (``cols``) and an orthonormal basis V (len(cols), r) of
    the row space of ``z[:, cols]`` whose columns are principal axes, directions with
    ``||z v|| <= rtol * max`` left out.

    The penalised optimum lies in the row space of ``z`` (stationarity reads lam W = -G^T z / n: a feature
    constant on the training split gets weight 0), so the problem on ``z[:, cols] V`` has the same optimum,
    W[:, cols] = A V^T, in r <= min(n, d) dimensions. A left-out direction could move the logits by at most
    about rtol^2 * s_max^2 / (n lam), below rounding."""
    cols = torch.nonzero(z.abs().amax(0) > 0).view(-1)
    zc = z[:, cols]
    n, d = zc.shape
    if d == 0:
        return cols, torch.zeros(0, 0, dtype=z.dtype, device=z.device)
    if n < d:  # an exact basis of the row space first (QR of z^T), then the principal axes inside it
        qb, _ = torch.linalg.qr(zc.T)
        zq = zc @ qb
        _, p = torch.linalg.eigh(zq.T @ zq)
        v = qb @ p
    else:
        _, v = torch.linalg.eigh(zc.T @ zc)
    norms = (zc @ v).norm(dim=0)
    keep = torch.nonzero(norms > rtol * float(norms.max())).view(-1)
    keep = keep[torch.argsort(norms[keep], descending=True)]
    return cols, v[:, keep]


class _Problem:
    """The probe objective on features ``q`` (n, r) with weights theta = [A | b] (C, r + 1): value, gradient,
    Hessian-vector products and the Hessian's diagonal (``objective`` with ``q`` for ``z``)."""

    def __init__(self, q: torch.Tensor, y: torch.Tensor, multi_label: bool, lam: float) -> None:
        self.q, self.multi, self.lam, self.n = q, multi_label, lam, q.shape[0]
        self.q2 = q * q
        self.y = y.to(q.dtype) if multi_label else y
        self.p: torch.Tensor | None = None

    def value(self, th: torch.Tensor) -> float:
        a, b = th[:, :-1], th[:, -1]
        return float(data_loss(self.q @ a.T + b, self.y, self.multi)) + 0.5 * self.lam * float(a.pow(2).sum())

    def grad(self, th: torch.Tensor) -> tuple[float, torch.Tensor]:
        a, b = th[:, :-1], th[:, -1]
        logits = self.q @ a.T + b
        if self.multi:
            self.p = torch.sigmoid(logits)
            r = (self.p - self.y) / (self.n * logits.shape[1])
        else:
            self.p = torch.softmax(logits, 1)
            r = self.p.clone()
            r[torch.arange(self.n), self.y] -= 1.0
            r /= self.n
        f = float(data_loss(logits, self.y, self.multi)) + 0.5 * self.lam * float(a.pow(2).sum())
        g = torch.cat([r.T @ self.q + self.lam * a, r.sum(0)[:, None]], 1)
        return f, g

    def hess_vec(self, v: torch.Tensor) -> torch.Tensor:
        assert self.p is not None
        p = self.p
        dl = self.q @ v[:, :-1].T + v[:, -1]
        if self.multi:
            u = p * (1 - p) * dl / (self.n * p.shape[1])
        else:
            u = p * (dl - (p * dl).sum(1, keepdim=True)) / self.n
        # the tiny ridge on the bias keeps the softmax's one flat direction (a shift of every bias) out of CG;
        # the gradient has no component along it, so the optimum is unchanged
        return torch.cat([u.T @ self.q + self.lam * v[:, :-1], (u.sum(0) + 1e-12 * v[:, -1])[:, None]], 1)

    def data_hessian(self) -> torch.Tensor:
        """The data term's Hessian, dense, (C (r + 1), C (r + 1)), theta flattened row by row."""
        assert self.p is not None
        p, n = self.p, self.n
        x = torch.cat([self.q, torch.ones(n, 1, dtype=self.q.dtype, device=self.q.device)], 1)
        c, m = p.shape[1], x.shape[1]
        h = torch.zeros(c, m, c, m, dtype=x.dtype, device=x.device)
        if self.multi:
            for k in range(c):
                h[k, :, k] = x.T @ (x * (p[:, k] * (1 - p[:, k]) / (n * c))[:, None])
        elif c == 2:  # both classes' weights are p0 p1 (with signs): one product
            blk = x.T @ (x * (p[:, 0] * p[:, 1] / n)[:, None])
            h[0, :, 0], h[1, :, 1], h[0, :, 1], h[1, :, 0] = blk, blk, -blk, -blk
        else:
            for k in range(c):
                for k2 in range(k, c):
                    wt = (p[:, k] * ((1.0 if k == k2 else 0.0) - p[:, k2])) / n
                    blk = x.T @ (x * wt[:, None])
                    h[k, :, k2] = blk
                    h[k2, :, k] = blk.T
        return h.reshape(c * m, c * m)

    def centre(self, v: torch.Tensor) -> torch.Tensor:
        """Softmax: remove a shift of every bias, the one direction in which the objective is flat."""
        if not self.multi:
            v[:, -1] -= v[:, -1].mean()
        return v

    def hess_diag(self) -> torch.Tensor:
        assert self.p is not None
        p = self.p
        w = p * (1 - p) / (self.n * (p.shape[1] if self.multi else 1))
        return torch.cat([w.T @ self.q2 + self.lam, w.sum(0)[:, None] + 1e-12], 1)


def _pcg(prob: _Problem, g: torch.Tensor, precond: Callable[[torch.Tensor], torch.Tensor], rtol: float,
         max_iter: int) -> tuple[torch.Tensor, int, bool]:
    """Solve H s = g by preconditioned conjugate gradients to a relative residual ``rtol`` (in the
    preconditioner's norm); also whether it got there within ``max_iter`` steps."""
    s = torch.zeros_like(g)
    r = g.clone()
    zr = precond(r)
    d = zr.clone()
    rz = float((r * zr).sum())
    stop = (rtol ** 2) * rz
    it = 0
    while it < max_iter and rz > stop:
        hd = prob.hess_vec(d)
        dhd = float((d * hd).sum())
        if dhd <= 0:
            break
        alpha = rz / dhd
        s += alpha * d
        r -= alpha * hd
        zr = precond(r)
        rz_new = float((r * zr).sum())
        d = zr + (rz_new / rz) * d
        rz = rz_new
        it += 1
    return prob.centre(s), it, rz <= stop


def _dense_precond(prob: _Problem, hinv: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda r: prob.centre((hinv @ r.reshape(-1)).reshape(r.shape))


def _diag_precond(diag: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda r: r / diag


DENSE_MAX = 3000  # parameters up to which the preconditioner is the dense Hessian (72 MB in float64)
REBUILD_CG = 3  # CG steps after which the data Hessian is rebuilt at the current point (cheaper than more steps)


def fit_newton(q: torch.Tensor, y: torch.Tensor, multi_label: bool, lam: float, theta0: torch.Tensor,
               max_iter: int, tol: float, max_cg: int = 2000, state: dict[str, Any] | None = None
               ) -> tuple[torch.Tensor, dict[str, Any]]:
    """Minimise the probe objective on features ``q`` from theta0 = [A | b] by Newton's method with a
    backtracking (Armijo) line search, each Newton system solved by preconditioned conjugate gradients.

    Stops when the Newton step s = H^-1 g, the distance to the optimum of a quadratic model that is exact at
    the optimum, is at most ``tol`` relative to the parameters: ``rel_dist`` = ||s|| / ||theta|| <= tol
    (``converged``); ``gap`` = g^T s / 2 estimates the objective's excess over the optimum. Both are relative
    to the problem's own scale, so a fit far from the optimum cannot pass them at any strength."""
    prob = _Problem(q, y, multi_label, lam)
    th = theta0.clone()
    f, g = prob.grad(th)
    g0 = float(g.norm())
    iters = cg_total = 0
    rel_dist = gap = math.inf
    converged = False
    state = {} if state is None else state
    dense = th.numel() <= DENSE_MAX
    shape = th.shape
    hinv: torch.Tensor | None = None
    hessians = 0
    cg = 0
    while True:
        if dense:
            if state.get("hdata") is None or cg > REBUILD_CG:  # (re)build the data Hessian where CG starts to labour
                state["hdata"] = prob.data_hessian()
                hessians += 1
                hinv = None
            if hinv is None:
                reg = torch.full(shape, lam, dtype=th.dtype, device=th.device)
                reg[:, -1] = 1e-10 * max(float(state["hdata"].diagonal().max()), 1e-30)
                # its inverse, once: a product per CG step is much cheaper than two triangular solves
                hinv = torch.cholesky_inverse(torch.linalg.cholesky(state["hdata"] + torch.diag(reg.reshape(-1))))
            precond = _dense_precond(prob, hinv)
        else:
            precond = _diag_precond(prob.hess_diag())
        gn = float(g.norm())
        eta = min(0.1, math.sqrt(gn / g0)) if g0 > 0 else 0.1  # forcing term: looser far from the optimum
        s, cg, solved = _pcg(prob, g, precond, max(eta, 1e-10), max_cg)
        cg_total += cg
        rel_dist = float(s.norm()) / max(float(th.norm()), 1e-12)
        if rel_dist <= 10 * tol and eta > 1e-6:  # a candidate: the estimate from an accurate solve
            s, cg, solved = _pcg(prob, g, precond, 1e-6, max_cg)
            cg_total += cg
            rel_dist = float(s.norm()) / max(float(th.norm()), 1e-12)
        gap = 0.5 * float((g * s).sum())
        converged = gn == 0 or (rel_dist <= tol and solved)
        if converged:  # the final step, taken only where it lowers the objective (rel_dist is the larger, before it)
            f_new = prob.value(th - s)
            if f_new <= f:
                th = th - s
                f, g = prob.grad(th)
            break
        if iters >= max_iter:
            break
        t, dec = 1.0, 2 * gap
        while True:
            f_new = prob.value(th - t * s)
            if f_new <= f - 1e-4 * t * dec or t < 1e-10:
                break
            t *= 0.5
        th = th - t * s
        iters += 1
        f, g = prob.grad(th)
    return th, {"iterations": iters, "cg_iterations": cg_total, "hessians": hessians, "objective": f,
                "rel_dist": rel_dist, "gap": gap, "converged": converged}


def _grad_max(w: torch.Tensor, b: torch.Tensor, z: torch.Tensor, y: torch.Tensor, multi_label: bool,
              lam: float) -> float:
    """The largest absolute entry of ``objective``'s gradient at (w, b), on the full standardised features."""
    wg, bg = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    objective(wg, bg, z, y, multi_label, lam).backward()
    assert wg.grad is not None and bg.grad is not None
    return max(float(wg.grad.abs().max()), float(bg.grad.abs().max()))


def fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, n_classes: int, *,
                     multi_label: bool, score: Callable[[torch.Tensor], tuple[float, ...]],
                     grid: list[float], max_iter: int = 1000, tol: float = 1e-6, threads: int | None = 1
                     ) -> ProbeFit:
    """Fit one probe per L2 strength of ``grid`` on the training features and keep the one whose validation
    logits score best by ``score`` (a key; higher is better, e.g. the engine's checkpoint-selection key).

    ``n_classes`` is the number of outputs: classes, or labels for multi-label tasks. ``max_iter`` caps the
    Newton iterations per strength, ``tol`` the estimated relative distance to the optimum (``fit_newton``).

    ``threads``: torch's intra-op threads during the fit on a CPU (restored after; None: as set). One by
    default: the solve is thousands of small products, and with two threads on a busy machine each one waits
    for a descheduled thread (BreastMNIST's path took 34.6 s at two threads beside other jobs; see
    docs/performance.md); the result also no longer depends on the machine's core count.
    """
    if threads is None or train_x.device.type != "cpu" or threads == torch.get_num_threads():
        return _fit_linear_probe(train_x, train_y, val_x, n_classes, multi_label=multi_label, score=score,
                                 grid=grid, max_iter=max_iter, tol=tol)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _fit_linear_probe(train_x, train_y, val_x, n_classes, multi_label=multi_label, score=score,
                                 grid=grid, max_iter=max_iter, tol=tol)
    finally:
        torch.set_num_threads(before)


def _fit_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, n_classes: int, *,
                      multi_label: bool, score: Callable[[torch.Tensor], tuple[float, ...]],
                      grid: list[float], max_iter: int, tol: float) -> ProbeFit:
    t0 = time.perf_counter()
    dev = train_x.device
    x = train_x.to(DTYPE)
    mean, scale = standardise(x)
    z = (x - mean) / scale
    zv = (val_x.to(device=dev, dtype=DTYPE) - mean) / scale
    y = train_y.to(dev)
    if not multi_label:
        y = y.long().view(-1)
    cols, v = reduced_basis(z)
    q, qv = z[:, cols] @ v, zv[:, cols] @ v
    basis_s = time.perf_counter() - t0
    # Two classes: the softmax's optimum has W = [-u/2, u/2], b = [-c/2, c/2] (the penalty splits the difference
    # of the two rows evenly; the biases are defined up to a common shift), so one sigmoid output fits it:
    # mean BCE(z u + c, y == 1) + lam/4 ||u||^2 is the same objective, in half the parameters.
    binary = not multi_label and n_classes == 2
    yy, multi, outs = ((y == 1).to(DTYPE).view(-1, 1), True, 1) if binary else (y, multi_label, n_classes)

    def full(t: torch.Tensor) -> torch.Tensor:  # theta of the original problem (n_classes rows)
        return torch.cat([-t / 2, t / 2]) if binary else t

    th = torch.zeros(outs, v.shape[1] + 1, dtype=DTYPE, device=dev)
    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, ...], int, torch.Tensor, torch.Tensor] | None = None
    state: dict[str, Any] = {}  # the last data Hessian, the next strength's preconditioner
    for i, lam in enumerate(grid):
        th, info = fit_newton(q, yy, multi, lam / 2 if binary else lam, th, max_iter, tol, state=state)
        t = full(th)
        key = score((qv @ t[:, :-1].T + t[:, -1]).float())
        w = torch.zeros(n_classes, z.shape[1], dtype=DTYPE, device=dev)
        w[:, cols] = t[:, :-1] @ v.T  # back in the standardised features' space
        info["grad_max"] = _grad_max(w, t[:, -1], z, y, multi_label, lam)
        trials.append({"l2": lam, "val_key": list(key), **info})
        if best is None or key > best[0]:
            best = (key, i, w, t[:, -1])
    assert best is not None
    key, i, ws, bs = best
    chosen = trials[i]
    weight = ws / scale  # fold the standardisation into the head: W z + b = (W / s) x + (b - (W / s) mean)
    bias = bs - weight @ mean
    info = {"solver": "newton-cg", "l2": chosen["l2"], "iterations": chosen["iterations"],
            "grad_max": chosen["grad_max"], "converged": chosen["converged"], "rel_dist": chosen["rel_dist"],
            "gap": chosen["gap"], "objective": chosen["objective"], "val_key": chosen["val_key"],
            "total_iterations": sum(t["iterations"] for t in trials),
            "total_cg_iterations": sum(t["cg_iterations"] for t in trials), "varying_features": int(cols.numel()),
            "basis_rank": int(v.shape[1]), "basis_s": basis_s, "grid": trials, "seconds": time.perf_counter() - t0}
    return ProbeFit(weight, bias, info)
