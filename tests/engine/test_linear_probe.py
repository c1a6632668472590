"""The linear probe solved to convergence, and the neutral start of every new head."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from medft_bench.config import CellConfig, TrainSettings, freeze_params
from medft_bench.data.batches import iterate
from medft_bench.models.head_init import feature_stats
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell
from medft_bench.training.engine import build_context
from medft_bench.training.linear_probe import fit_linear_probe, fit_strength, objective, standardise, strengths


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def blobs(n: int = 120, d: int = 6, c: int = 3, seed: int = 0, scale: float = 40.0
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian classes on features far from unit scale (as pretrained features are)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    centres = torch.randn(c, d, generator=g) * 1.5
    x = (centres[y] + torch.randn(n, d, generator=g)) * scale + 7.0
    return x, y


def _flat_objective(theta: np.ndarray, z: torch.Tensor, y: torch.Tensor, c: int, lam: float,
                    multi: bool) -> tuple[float, np.ndarray]:
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    w, b = t[: c * z.shape[1]].view(c, -1), t[c * z.shape[1]:]
    f = objective(w, b, z, y, multi, lam)
    f.backward()
    return float(f.detach()), t.grad.numpy().copy()


@pytest.mark.parametrize("multi", [False, True])
def test_fit_reaches_the_optimum(multi: bool) -> None:
    x, y = blobs()
    if multi:
        y = torch.stack([y == 0, y != 1], 1).float()
    c = y.shape[1] if multi else 3
    mean, scale = standardise(x.double())
    z = (x.double() - mean) / scale
    lam = 1e-2
    w, b, info = fit_strength(z, y if multi else y.long(), multi, lam, torch.zeros(c, 6, dtype=torch.float64),
                              torch.zeros(c, dtype=torch.float64), max_iter=500, tol=1e-8)
    assert info["converged"] and info["grad_max"] <= 1e-8 and info["iterations"] > 1
    ref = minimize(_flat_objective, np.zeros(c * 7), args=(z, y if multi else y.long(), c, lam, multi), jac=True,
                   method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000})
    assert info["objective"] == pytest.approx(ref.fun, abs=1e-9)  # the same minimum as scipy's solver
    g = torch.Generator().manual_seed(1)
    for _ in range(5):  # convex: every nearby point is worse
        dw, db = torch.randn(w.shape, generator=g, dtype=w.dtype) * 1e-3, torch.randn(b.shape, generator=g,
                                                                                      dtype=b.dtype) * 1e-3
        assert float(objective(w + dw, b + db, z, y if multi else y.long(), multi, lam)) > info["objective"]


def test_standardisation_is_folded_back_into_the_head() -> None:
    x, y = blobs()
    xv, _ = blobs(seed=3)
    fit = fit_linear_probe(x, y, xv, 3, multi_label=False, score=lambda logits: (0.0,), grid=[1e-3])
    mean, scale = standardise(x.double())
    w, b, _ = fit_strength((x.double() - mean) / scale, y, False, 1e-3, torch.zeros(3, 6, dtype=torch.float64),
                           torch.zeros(3, dtype=torch.float64), 5000, 1e-12)  # an independent, tight solve
    torch.testing.assert_close(xv.double() @ fit.weight.T + fit.bias, ((xv.double() - mean) / scale) @ w.T + b,
                               atol=1e-5, rtol=1e-5)
    assert scale.ndim == 0  # one global scale: the penalty is the plain L2 of the weights (up to a constant)


def test_strength_is_chosen_on_validation_and_ties_keep_the_stronger() -> None:
    x, y = blobs()
    grid = strengths(1e-4, 1e2, 7)
    assert grid[0] == pytest.approx(1e2) and grid[-1] == pytest.approx(1e-4) and len(grid) == 7
    seen: list[torch.Tensor] = []

    def score(logits: torch.Tensor) -> tuple[float, ...]:  # rewards the 4th fit only: 1e-1
        seen.append(logits)
        return (1.0 if len(seen) == 4 else 0.0,)

    fit = fit_linear_probe(x, y, x[:30], 3, multi_label=False, score=score, grid=grid)
    assert fit.info["l2"] == pytest.approx(0.1) and [t["l2"] for t in fit.info["grid"]] == grid
    assert all(t["converged"] for t in fit.info["grid"])
    flat = fit_linear_probe(x, y, x[:30], 3, multi_label=False, score=lambda logits: (0.5,), grid=grid)
    assert flat.info["l2"] == pytest.approx(1e2)  # all tied: the strongest regularisation


def wide(n: int = 40, d: int = 60, c: int = 2, multi: bool = False, seed: int = 0
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fewer images than features (the reduced basis), a third of the features constant (dead units)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.randn(n, d, generator=g) + 0.8 * torch.randn(c, d, generator=g)[y]
    x[:, ::3] = 2.5
    if multi:
        y = torch.stack([y == 0, (y + torch.arange(n) // 5) % 2 == 1], 1).float()
    return x * 30.0, y


def _reference(z: torch.Tensor, y: torch.Tensor, c: int, lam: float, multi: bool) -> float:
    ref = minimize(_flat_objective, np.zeros(c * (z.shape[1] + 1)), args=(z, y, c, lam, multi), jac=True,
                   method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 1e-16, "maxiter": 50_000, "maxcor": 50})
    return float(ref.fun)


@pytest.mark.parametrize("c,multi", [(2, False), (3, False), (2, True)])
def test_path_reaches_the_tightly_converged_optimum(c: int, multi: bool) -> None:
    x, y = wide(c=c, multi=multi)
    grid = [1e-1, 1e-3, 1e-5]
    fit = fit_linear_probe(x, y, x[:8], c, multi_label=multi, score=lambda logits: (0.0,), grid=grid)
    assert fit.info["varying_features"] == 40 and fit.info["basis_rank"] <= 39  # n < d: a reduced basis
    mean, scale = standardise(x.double())
    z = (x.double() - mean) / scale
    for t in fit.info["grid"]:
        ref = _reference(z, y if multi else y.long(), c, t["l2"], multi)
        assert t["converged"] and t["rel_dist"] <= 1e-6
        assert (t["objective"] - ref) / ref <= 1e-9  # never above the reference by more than rounding
    w = fit.weight * scale  # the chosen head, in the standardised space: it has the objective reported
    b = fit.bias + fit.weight @ mean
    chosen = float(objective(w, b, z, y if multi else y.long(), multi, fit.info["l2"]))
    assert chosen == pytest.approx(fit.info["objective"], rel=1e-12)


def test_convergence_flag_is_relative_and_honest() -> None:
    x, y = wide()
    grid = [1e-5]
    short = fit_linear_probe(x, y, x[:8], 2, multi_label=False, score=lambda logits: (0.0,), grid=grid, max_iter=2)
    full = fit_linear_probe(x, y, x[:8], 2, multi_label=False, score=lambda logits: (0.0,), grid=grid)
    assert not short.info["converged"] and short.info["rel_dist"] > 1e-6  # stopped early: said so
    assert full.info["converged"] and full.info["rel_dist"] <= 1e-6 and full.info["iterations"] > 2
    assert short.info["objective"] > full.info["objective"] + 1e-6 * full.info["objective"]
    assert short.info["gap"] > full.info["gap"] >= 0


def _cfg(strategy: str, dataset: str = "pneumoniamnist", **train: Any) -> CellConfig:
    return CellConfig(tier="unit", dataset=dataset, backbone="test_resnet", strategy=strategy, weights="random",
                      synthetic=True, img_size=32, synthetic_splits=(("train", 64), ("val", 32), ("test", 32)),
                      strategy_params=freeze_params({}), train=TrainSettings(epochs=1, batch_size=16, **train))


@pytest.mark.parametrize("dataset,outputs", [("pneumoniamnist", 2), ("bloodmnist", 8), ("chestmnist", 14)])
def test_new_head_starts_at_ln_c(dataset: str, outputs: int) -> None:
    ctx, _ = build_context(_cfg("ft", dataset), RunEnv(device="cpu"))
    assert ctx.head_init["init"] == "scaled" and ctx.head_init["feature_rms_norm"] > 0
    x, y = next(iter(ctx.train_batches(1, generator=torch.Generator().manual_seed(0))))
    ctx.model.eval()
    with torch.no_grad():
        loss = float(ctx.loss(ctx.model(x), y))
        logits = ctx.model(x)
    expected = math.log(2) if ctx.data.multi_label else math.log(outputs)
    assert logits.shape[1] == outputs and loss == pytest.approx(expected, abs=5e-3)
    assert float(logits.std()) == pytest.approx(0.01, rel=0.5)  # neutral, yet not zero: gradients reach the body
    zero, _ = build_context(_cfg("ft", dataset, head_init="zero"), RunEnv(device="cpu"))
    assert all(float(p.detach().abs().max()) == 0 for p in zero.backbone.head.parameters())
    default, _ = build_context(_cfg("ft", dataset, head_init="default"), RunEnv(device="cpu"))
    assert float(default.backbone.head.weight.detach().abs().max()) > 0.01


def test_feature_stats_by_hand() -> None:
    # Norms 1, sqrt 2, 1: RMS sqrt(4/3). Cosines: (1,0)-(1,1) 1/sqrt 2, (1,0)-(0,1) 0, (1,1)-(0,1) 1/sqrt 2.
    got = feature_stats(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    assert got["feature_rms_norm"] == pytest.approx(math.sqrt(4 / 3))
    assert got["feature_cosine"] == pytest.approx(2 / math.sqrt(2) / 3)
    same = feature_stats(torch.tensor([[3.0, 4.0], [0.6, 0.8], [30.0, 40.0]]))  # one direction, three scales
    assert same["feature_cosine"] == pytest.approx(1.0)
    assert feature_stats(torch.ones(1, 4))["feature_cosine"] is None  # no pair to compare


@pytest.mark.parametrize("mode", ["scaled", "zero", "default"])
def test_every_head_init_records_its_features(mode: str) -> None:
    ctx, _ = build_context(_cfg("ft", head_init=mode), RunEnv(device="cpu"))
    stats = feature_stats(extract_sample(ctx))
    assert ctx.head_init["init"] == mode
    assert ctx.head_init["feature_cosine"] == pytest.approx(stats["feature_cosine"], abs=1e-5)
    assert ctx.head_init["feature_rms_norm"] == pytest.approx(stats["feature_rms_norm"], rel=1e-5)


def extract_sample(ctx: Any) -> torch.Tensor:
    """The 64 seeded training images' head inputs, recomputed the way a reader would."""
    ctx.model.eval()
    images, _ = next(iterate(ctx.data.train, 64, shuffle=True, generator=torch.Generator().manual_seed(ctx.cfg.seed)))
    with torch.no_grad():
        return ctx.backbone.features(ctx.to_input(images)).float()


def test_lp_cell_is_solved_and_recorded() -> None:
    rec = compute_cell(_cfg("lp"), RunEnv(device="cpu")).record
    [entry] = rec["epochs"]
    assert entry["stage"] == "lp" and entry["epochs"] == 0 and entry["solver"] == "newton-cg"
    assert entry["converged"] and entry["grad_max"] <= 1e-6 and len(entry["grid"]) == 17
    assert entry["rel_dist"] <= 1e-6 and all(t["converged"] and t["rel_dist"] <= 1e-6 for t in entry["grid"])
    assert entry["l2"] in [t["l2"] for t in entry["grid"]]
    assert rec["metrics"]["val"]["balanced_acc"] == pytest.approx(entry["val_key"][0])  # the chosen fit's score
    assert rec["costs"]["fit_s"] > 0 and rec["costs"]["train_s"] >= rec["costs"]["fit_s"]
    assert rec["strategy"]["hparams"]["solver"] == "lbfgs" and rec["head"]["init"] == "scaled"
    study = compute_cell(_cfg("lp").with_strategy("lp", {"solver": "adam"}), RunEnv(device="cpu")).record
    assert study["epochs"][0]["epoch"] == 0 and study["costs"]["cached_feature_epochs"] == 1
