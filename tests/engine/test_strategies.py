"""Strategies: which parameters train in every stage, penalties, per-epoch probes, reuse, kNN, plug-ins.

Small and fast: timm's ``test_resnet`` (0.37 M parameters; blocks stem, layer1-4, fc), 32 px synthetic
images, a few dozen samples, one or two epochs. The end-to-end run of every strategy on ResNet-18 is in
``test_strategies_e2e.py``.
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from medft_bench.config import CellConfig, TrainSettings, freeze_params
from medft_bench.errors import MedftError
from medft_bench.models.blocks import check_partition
from medft_bench.results.store import ResultStore
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell
from medft_bench.strategies import registry
from medft_bench.strategies.auto_rgn import rgn_multipliers
from medft_bench.strategies.auto_snr import AutoSNR
from medft_bench.strategies.base import EpochPlan, Strategy
from medft_bench.strategies.knn import knn_scores
from medft_bench.strategies.lp_ft import LinearProbeThenFineTune
from medft_bench.strategies.registry import create_strategy, get_strategy, register_strategy, strategy_names
from medft_bench.training.engine import Trainer, _epoch_generator, build_context
from medft_bench.training.progress import EpochProgress

BACKBONE = "test_resnet"
STUDY = {"ft", "lp", "gu_last_first", "gu_first_last", "lp_ft", "l1_sp", "l2_sp", "auto_rgn"}
BUILTIN = STUDY | {"auto_snr", "surgical", "llrd", "bitfit", "norm_only", "lora", "knn"}


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is faster than two contending ones
    yield
    torch.set_num_threads(n)


def cfg_for(strategy: str, *, backbone: str = BACKBONE, epochs: int = 2, n_train: int = 64, batch_size: int = 16,
            params: dict[str, Any] | None = None, **train: Any) -> CellConfig:
    return CellConfig(tier="unit", dataset="pneumoniamnist", backbone=backbone, strategy=strategy, weights="random",
                      synthetic=True, img_size=32, synthetic_splits=(("train", n_train), ("val", 32), ("test", 32)),
                      strategy_params=freeze_params(params or {}),
                      train=TrainSettings(epochs=epochs, batch_size=batch_size, **train))


def context(strategy: str, **kw: Any) -> tuple[Any, Strategy]:
    ctx, strat = build_context(cfg_for(strategy, **kw), RunEnv(device="cpu"))
    strat.setup(ctx)
    return ctx, strat


def runner_for(ctx: Any, strat: Strategy) -> Trainer:
    return Trainer(ctx, strat, EpochProgress("test", 1, False))


def snapshot(ctx: Any) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in ctx.model.named_parameters()}


def buffers(ctx: Any) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in ctx.model.named_buffers()}


def run_epoch(ctx: Any, strat: Strategy, runner: Trainer, stage: int, epoch: int) -> tuple[EpochPlan, set[str]]:
    """One epoch as the engine runs it; returns the plan and the parameters that changed."""
    gen = _epoch_generator(ctx.cfg.seed, stage, epoch)
    ctx.epoch_generator = gen
    plan = strat.plan(ctx, stage, epoch)
    before = snapshot(ctx)
    runner.train_epoch(plan, strat.stages(ctx)[stage].lr, gen)
    after = snapshot(ctx)
    return plan, {n for n in after if n not in before or not torch.equal(after[n], before[n])}


def blocks_params(blocks: list[tuple[str, list[str]]]) -> set[str]:
    return {p for _, ps in blocks for p in ps}


def own_params(model: nn.Module, types: tuple[type, ...], local: str | None = None) -> set[str]:
    """Independent of the code under test: direct parameters of modules of ``types``."""
    return {f"{m}.{p}" if m else p for m, mod in model.named_modules() if isinstance(mod, types)
            for p, _ in mod.named_parameters(recurse=False) if local is None or p == local}


def pretrained_like(ctx: Any) -> None:
    """timm zero-initialises each residual branch's last BatchNorm scale; with those scales frozen (BitFit,
    LoRA) the branch stays dead and its other parameters get exactly zero gradients. Pretrained networks
    have no zero scales: give every BatchNorm scale 1 so that every trainable parameter moves."""
    with torch.no_grad():
        for mod in ctx.model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.weight.fill_(1.0)


def all_bn_buffers_of(ctx: Any, params: set[str]) -> dict[str, torch.Tensor]:
    """Running statistics of the BatchNorm layers whose parameters are all in ``params``."""
    out = {}
    for m, mod in ctx.model.named_modules():
        if isinstance(mod, nn.BatchNorm2d) and {f"{m}.weight", f"{m}.bias"} <= params:
            out.update({f"{m}.{b}": t.clone() for b, t in mod.named_buffers(recurse=False)})
    return out


# -- registry ---------------------------------------------------------------------------------------------
def test_builtin_strategies_registered_with_metadata() -> None:
    names = strategy_names()
    assert BUILTIN <= set(names)
    assert {n for n in names if get_strategy(n).in_study} & BUILTIN == STUDY
    for n in BUILTIN:
        cls = get_strategy(n)
        assert cls.description and cls.name == n
        assert isinstance(cls.defaults, dict)
        with pytest.raises(ValueError, match="no parameter"):
            create_strategy(n, not_a_parameter=1)


def test_hparams_resolve_context_defaults_and_serialise() -> None:
    for n in sorted(BUILTIN):
        ctx, strat = context(n)
        hp = strat.hparams(ctx)
        json.dumps(hp)  # goes into the record
        assert set(strat.defaults) <= set(hp), n
    ctx, strat = context("lp_ft", epochs=7)
    hp = strat.hparams(ctx)
    assert (hp["ft_epochs"], hp["ft_min_epochs"], hp["ft_norm_mode"]) == (7, 4, "eval")  # FT's budget, half of it
    assert hp["ft_lr"] == pytest.approx(1e-4) and hp["lp"]["solver"] == "lbfgs"
    ctx, strat = context("gu_last_first", epochs=12)
    assert strat.hparams(ctx)["epochs_per_block"] == 1  # ULMFiT: one epoch per block


# -- gradual unfreezing --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gu_last_first", "gu_first_last"])
def test_gradual_unfreezing_trains_k_blocks_plus_head(name: str) -> None:
    ctx, strat = context(name, epochs=6)  # 6 blocks: one epoch per phase, all unfrozen in the last epoch
    body, head = ctx.blocks[:-1], set(ctx.blocks[-1][1])
    assert len(body) == 5 and head == {"fc.weight", "fc.bias"}
    order = body[::-1] if name == "gu_last_first" else body
    [stage] = strat.stages(ctx)
    assert stage.epochs == 6 and stage.min_epochs == 6
    runner = runner_for(ctx, strat)
    for e in range(stage.epochs):
        frozen_stats = all_bn_buffers_of(ctx, set(ctx.param_names) - blocks_params(order[:e]) - head)
        plan, changed = run_epoch(ctx, strat, runner, 0, e)
        expected = head | blocks_params(order[:e])
        assert set(plan.trainable) == expected, e
        assert changed == expected, e
        assert plan.norm_mode == "frozen_eval"
        fully_trainable = [b for b, ps in body if set(ps) <= plan.trainable]
        assert sorted(fully_trainable) == sorted(b for b, _ in order[:e])
        assert plan.note["unfrozen_blocks"] == [b for b, _ in order[:e]]
        after = buffers(ctx)
        for k, v in frozen_stats.items():  # frozen blocks' BatchNorm statistics stay put
            assert torch.equal(after[k], v), k
    first = order[0][0]
    assert first == ("group4" if name == "gu_last_first" else "group0")


def test_gradual_unfreezing_follows_ulmfit_schedule() -> None:
    ctx, strat = context("gu_last_first", epochs=12)
    [stage] = strat.stages(ctx)
    assert stage.min_epochs == 6  # 5 unfreezing steps of one epoch, then the first all-unfrozen epoch: no more
    phases = [strat.plan(ctx, 0, e).note["gu_phase"] for e in range(12)]
    assert phases == [0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5]  # then everything until the budget ends
    assert strat.log["complete"] is True
    assert [s["epoch"] for s in strat.log["schedule"]] == [1, 2, 3, 4, 5]
    ctx, strat = context("gu_last_first", epochs=12, params={"epochs_per_block": 2})
    assert strat.stages(ctx)[0].min_epochs == 11
    assert [strat.plan(ctx, 0, e).note["gu_phase"] for e in range(12)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert strat.log["complete"] is True and strat.incomplete(ctx) is None
    assert [s["step"] for s in strat.log["schedule"]] == [8, 16, 24, 32, 40]  # 4 steps an epoch, 2 epochs a block
    # Fewer epochs than ULMFiT needs: 6 phases share the run's 16 steps (4 an epoch), 2 steps each, the last 6
    ctx, strat = context("gu_first_last", epochs=4, params={"epochs_per_block": 3})
    assert ctx.steps_per_epoch == 4 and strat.unfreeze_steps(ctx) == [2, 4, 6, 8, 10]
    assert [strat.plan(ctx, 0, e).note["gu_phase"] for e in range(4)] == [0, 2, 4, 5]
    [stage] = strat.stages(ctx)
    assert (stage.min_epochs, stage.first_candidate) == (3, 2)  # the last phase begins at step 10, in epoch 2
    assert strat.log["complete"] is True
    assert [(s["step"], s["epoch"]) for s in strat.log["schedule"]] == [(2, 0), (4, 1), (6, 1), (8, 2), (10, 2)]


def test_gradual_unfreezing_completes_within_a_short_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 epochs for 6 phases: every block unfreezes at its step inside an epoch and trains before the budget ends,
    the frozen blocks' BatchNorm statistics stay put until then, and no checkpoint before the last phase is kept."""
    ctx, strat = context("gu_last_first", epochs=2)  # 64 images, batch 16: 4 steps an epoch, 8 in all
    order = strat._order(ctx)
    assert strat.unfreeze_steps(ctx) == [1, 2, 3, 4, 5] and strat.log.get("complete") is None
    [stage] = strat.stages(ctx)
    assert strat.log["complete"] is True and (stage.min_epochs, stage.first_candidate) == (2, 1)
    plan = strat.plan(ctx, 0, 0)
    assert [(k, q.note["gu_phase"]) for k, q in plan.switches] == [(1, 1), (2, 2), (3, 3)]
    assert strat.plan(ctx, 0, 1).note["gu_phase"] == 4  # step 4 opens epoch 1; step 5 unfreezes the last block
    assert [k for k, _ in strat.plan(ctx, 0, 1).switches] == [1]
    pretrained_like(ctx)  # no zero BatchNorm scales: every unfrozen parameter gets a gradient
    runner = runner_for(ctx, strat)
    last_stats = all_bn_buffers_of(ctx, set(blocks_params(order[-1:])))
    w0 = snapshot(ctx)
    _, changed = run_epoch(ctx, strat, runner, 0, 0)
    assert changed == set(strat.plan(ctx, 0, 0).switches[-1][1].trainable)  # head + 3 blocks by the epoch's end
    after = buffers(ctx)
    assert all(torch.equal(after[k], v) for k, v in last_stats.items())  # still frozen: eval-mode BatchNorm
    _, changed = run_epoch(ctx, strat, runner, 0, 1)
    assert blocks_params(order[-1:]) <= changed  # the last block (the stem) trained in the last phase
    assert {n for n, w in snapshot(ctx).items() if not torch.equal(w, w0[n])} == set(ctx.param_names)
    assert strat.incomplete(ctx) is None

    # Checkpoint selection: epoch 0 (blocks still frozen) scores best on validation yet is not kept.
    ctx, strat = context("gu_last_first", epochs=2)
    runner = runner_for(ctx, strat)
    scores = iter([0.9, 0.6])
    monkeypatch.setattr(runner, "evaluate", lambda split: dict.fromkeys(("balanced_acc", "auc"), next(scores)))
    runner.train()
    assert runner.measured.best["gu"]["epoch"] == 1
    assert [e.get("gu_phase_end") for e in runner.measured.epochs] == [3, 5]


def test_every_strategy_says_whether_its_method_completed() -> None:
    """``Strategy.incomplete``: the reference's 5 probe batches (fewer is a cut, and so is an epoch of fewer
    batches), LP-FT's stage 2 run, GU's last phase reached; other strategies complete."""
    for name in ("auto_rgn", "auto_snr"):
        ctx, strat = context(name, params={"n_batches": 2})  # 64 images, batch 16: 4 batches an epoch
        assert strat.incomplete(ctx) == "gradient probe on 2 batches, the reference's 5"
        ctx, strat = context(name, n_train=96)  # 6 batches: the reference's 5 measured
        assert strat.incomplete(ctx) is None
        ctx, strat = context(name)  # 4 batches an epoch: only 4 can be measured
        assert strat.incomplete(ctx) == "gradient probe on 4 batches, the reference's 5"
    ctx, strat = context("lp_ft")
    assert "stage 2" in (strat.incomplete(ctx) or "")
    strat.plan(ctx, 1, 0)
    assert strat.incomplete(ctx) is None
    ctx, strat = context("gu_first_last", epochs=1, n_train=16)  # one step for six phases
    assert "phases" in (strat.incomplete(ctx) or "")
    ctx, strat = context("ft")
    assert strat.incomplete(ctx) is None


# -- surgical, llrd, sparse -------------------------------------------------------------------------------
@pytest.mark.parametrize("block,expected", [(0, "group0"), ("group2", "group2"), (-1, "group4"), ("1", "group1")])
def test_surgical_trains_one_block_and_head(block: Any, expected: str) -> None:
    ctx, strat = context("surgical", params={"block": block})
    runner = runner_for(ctx, strat)
    plan, changed = run_epoch(ctx, strat, runner, 0, 0)
    want = set(dict(ctx.blocks)[expected]) | {"fc.weight", "fc.bias"}
    assert set(plan.trainable) == want and changed == want
    assert strat.hparams(ctx)["block_name"] == expected


def test_surgical_head_is_the_new_layer_only() -> None:
    ctx, strat = context("surgical", backbone="vgg19")
    assert ctx.blocks[-1][0] == "classifier" and len(ctx.blocks[-1][1]) == 6  # fc6, fc7 and the new head
    plan = strat.plan(ctx, 0, 0)
    assert set(plan.trainable) == set(ctx.blocks[0][1]) | {"classifier.6.weight", "classifier.6.bias"}
    strat.params["block"] = "classifier"  # the rest of the last block only when chosen by name
    assert set(strat.plan(ctx, 0, 0).trainable) == set(ctx.blocks[-1][1])


def test_surgical_rejects_unknown_block() -> None:
    ctx, strat = context("surgical", params={"block": "nope"})
    with pytest.raises(MedftError, match="group0"):
        strat.plan(ctx, 0, 0)
    ctx, strat = context("surgical", params={"block": 5})  # 5 backbone blocks: 0..4
    with pytest.raises(MedftError, match="out of range"):
        strat.plan(ctx, 0, 0)


def test_llrd_scales_per_block_from_head() -> None:
    ctx, strat = context("llrd")
    plan = strat.plan(ctx, 0, 0)
    assert set(plan.trainable) == set(ctx.param_names)
    for k, (_, ps) in enumerate(reversed(ctx.blocks)):
        for p in ps:
            assert plan.lr_scale[p] == pytest.approx((1 / 2.6) ** k)
    runner = runner_for(ctx, strat)
    runner.train_epoch(plan, 1e-3, _epoch_generator(0, 0, 0))
    lrs = {id(p): g["lr"] for g in runner.opt.param_groups for p in g["params"]}
    named = ctx.named_params()
    assert lrs[id(named["fc.weight"])] == pytest.approx(1e-3)
    assert lrs[id(named[ctx.blocks[0][1][0]])] == pytest.approx(1e-3 / 2.6**5)


def test_bitfit_trains_biases_and_head() -> None:
    ctx, strat = context("bitfit")
    pretrained_like(ctx)
    runner = runner_for(ctx, strat)
    plan, changed = run_epoch(ctx, strat, runner, 0, 0)
    want = own_params(ctx.model, (nn.Module,), "bias") | {"fc.weight", "fc.bias"}
    assert any(".bn" in n or "downsample.1" in n for n in want)  # BatchNorm biases are biases
    assert set(plan.trainable) == want and changed == want
    assert not any(n.endswith("weight") for n in want - {"fc.weight"})


def test_norm_only_trains_norm_affine_and_head() -> None:
    ctx, strat = context("norm_only")
    runner = runner_for(ctx, strat)
    plan, changed = run_epoch(ctx, strat, runner, 0, 0)
    want = own_params(ctx.model, (nn.BatchNorm2d,)) | {"fc.weight", "fc.bias"}
    assert set(plan.trainable) == want and changed == want
    # by module type, not by name: timm's ConvNeXt uses LayerNorm2d (a LayerNorm subclass) named "norm"
    ctx, strat = context("norm_only", backbone="test_convnext")
    plan = strat.plan(ctx, 0, 0)
    norms = own_params(ctx.model, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm))
    assert norms and set(plan.trainable) == norms | set(ctx.head_names)


# -- LoRA ---------------------------------------------------------------------------------------------------
def test_lora_adapters_and_head_train_backbone_stays_identical() -> None:
    ctx, strat = build_context(cfg_for("lora"), RunEnv(device="cpu"))
    pretrained_like(ctx)
    model = ctx.model
    w_before, b_before = snapshot(ctx), buffers(ctx)
    convs = {m for m, mod in model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear)) and m != "fc"}
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    y0 = model(x)
    strat.setup(ctx)
    model.eval()
    assert torch.equal(model(x), y0)  # lora_B starts at zero: the same function
    names = ctx.param_names
    adapters = {n for n in names if ".lora_A." in n or ".lora_B." in n}
    assert {n.split(".lora_")[0] for n in adapters} == convs  # every backbone conv, not the head
    check_partition(model, ctx.blocks)  # blocks follow the renamed parameters
    runner = runner_for(ctx, strat)
    for e in range(2):
        plan, changed = run_epoch(ctx, strat, runner, 0, e)
        assert set(plan.trainable) == adapters | {"fc.weight", "fc.bias"}
    after, b_after = snapshot(ctx), buffers(ctx)
    for n, w in w_before.items():
        if n.startswith("fc."):
            assert not torch.equal(after[n], w)
            continue
        new = n if n in after else ".base_layer.".join(n.rsplit(".", 1))
        assert torch.equal(after[new], w), n  # original weights bit-identical
    for n, b in b_before.items():
        new = n if n in b_after else ".base_layer.".join(n.rsplit(".", 1))
        assert torch.equal(b_after[new], b), n  # BatchNorm statistics too
    lora_b = [n for n in adapters if ".lora_B." in n]
    lora_a = [n for n in adapters if ".lora_A." in n]
    assert all(not torch.equal(after[n], torch.zeros_like(after[n])) for n in lora_b)
    assert sum(p.numel() for n, p in after.items() if n in plan.trainable) == strat.log["adapter_params"] + 194
    assert lora_a and strat.log["adapted_modules"] == len(convs)
    # The drift is that of the merged weights W + (alpha/r) B A against W, the adapters themselves left out.
    scale = strat.params["alpha"] / strat.params["rank"]
    delta = 0.0
    for m in convs:
        a, b = after[f"{m}.lora_A.default.weight"], after[f"{m}.lora_B.default.weight"]
        delta += (scale * (b.flatten(1) @ a.flatten(1))).pow(2).sum().item()
    sq_w0 = sum(w.pow(2).sum().item() for n, w in w_before.items() if not n.startswith("fc."))
    assert runner.drift() == pytest.approx((delta / sq_w0) ** 0.5, rel=1e-4)
    assert 0 < runner.drift() < 0.5


# -- L1-SP / L2-SP ---------------------------------------------------------------------------------------------
def _sp_expected(ctx: Any, w0: dict[str, torch.Tensor], norm: str, alpha: float, beta: float) -> float:
    total = 0.0
    for m, mod in ctx.model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and m != "fc":
            d = (mod.weight.detach() - w0[f"{m}.weight"]).double()
            total += alpha / 2 * float(d.pow(2).sum()) if norm == "l2" else alpha * float(d.abs().sum())
    head = ctx.model.fc.weight.detach().double()
    return total + beta / 2 * float(head.pow(2).sum())


@pytest.mark.parametrize("name,norm", [("l2_sp", "l2"), ("l1_sp", "l1")])
def test_starting_point_penalty_matches_hand_computation(name: str, norm: str) -> None:
    alpha, beta = 0.3, 0.05
    ctx, strat = build_context(cfg_for(name, params={"alpha": alpha, "beta": beta}), RunEnv(device="cpu"))
    w0 = snapshot(ctx)
    strat.setup(ctx)
    head_only = beta / 2 * float(ctx.model.fc.weight.detach().double().pow(2).sum())
    reg = strat.penalty()
    assert float(reg.detach()) == pytest.approx(head_only, rel=1e-5)  # zero apart from the head
    reg.backward()
    grads = {n: p.grad for n, p in ctx.model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())  # finite at w = w0 (L1 too)
    assert grads["conv1.0.weight"] is not None and float(grads["conv1.0.weight"].abs().max()) == 0.0
    assert grads["bn1.weight"] is None and grads["fc.bias"] is None
    ctx.model.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # biases, BatchNorm and the head bias are not penalised
        for n, p in ctx.model.named_parameters():
            if n.endswith("bias") or n in own_params(ctx.model, (nn.BatchNorm2d,)):
                p.add_(torch.randn(p.shape, generator=g))
    assert float(strat.penalty().detach()) == pytest.approx(head_only, rel=1e-5)
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    expected = _sp_expected(ctx, w0, norm, alpha, beta)
    assert expected > 2 * head_only
    assert float(strat.penalty().detach()) == pytest.approx(expected, rel=1e-4)
    plan = strat.plan(ctx, 0, 0)
    assert set(plan.trainable) == set(ctx.param_names) and plan.norm_mode == "train"
    n_sp = len([m for m, mod in ctx.model.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]) - 1
    assert strat.log["sp_tensors"] == n_sp and strat.log["head_penalised"] == ["fc.weight"]


@pytest.mark.parametrize("name", ["l2_sp", "l1_sp"])
def test_closed_form_penalty_gradient_equals_autograd(name: str) -> None:
    ctx, strat = build_context(cfg_for(name, params={"alpha": 0.3, "beta": 0.05}), RunEnv(device="cpu"))
    strat.setup(ctx)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in ctx.model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=g))
    params = dict(ctx.model.named_parameters())
    reference = strat.penalty()
    reference.backward()
    expected = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
    ctx.model.zero_grad(set_to_none=True)
    for p in params.values():  # a backward pass has left gradients: the penalty's must add to them
        p.grad = torch.ones_like(p)
    value = strat.add_penalty_grad(ctx)
    assert float(value) == pytest.approx(float(reference.detach()), rel=1e-5)
    for n, p in params.items():
        torch.testing.assert_close(p.grad - 1, expected.get(n, torch.zeros_like(p)), rtol=1e-5, atol=1e-7)
    assert float(expected["conv1.0.weight"].abs().max()) > 0


def test_closed_form_penalty_leaves_frozen_parameters_alone() -> None:
    ctx, strat = build_context(cfg_for("l2_sp"), RunEnv(device="cpu"))
    strat.setup(ctx)
    frozen = dict(ctx.model.named_parameters())["conv1.0.weight"]
    frozen.requires_grad_(False)
    with torch.no_grad():
        frozen.add_(0.1)  # away from w0: a penalty gradient would be non-zero
    strat.add_penalty_grad(ctx)
    assert frozen.grad is None  # the optimizer never clears a frozen parameter's gradient: none may be set


def test_starting_point_penalty_is_in_the_training_loss() -> None:
    losses = []
    for beta in (0.0, 1e8):  # the engine adds the penalty to every step's loss (the new head starts small)
        ctx, strat = context("l2_sp", params={"alpha": 0.0, "beta": beta})
        runner = runner_for(ctx, strat)
        gen = _epoch_generator(0, 0, 0)
        ctx.epoch_generator = gen
        losses.append(runner.train_epoch(strat.plan(ctx, 0, 0), 1e-3, gen))
    assert losses[0] < 10 and losses[1] > 1000


# -- Auto-RGN ---------------------------------------------------------------------------------------------------
def _independent_rgn(ctx: Any, names: list[str], batches: list[tuple[torch.Tensor, torch.Tensor]]
                     ) -> dict[str, float]:
    model = ctx.model
    model.eval()  # the reference's train_mode: eval
    named = dict(model.named_parameters())
    sums = {n: 0.0 for n in names}
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(True)
        nn.functional.cross_entropy(model(x), y).backward()
        for n in names:
            norm = float(named[n].detach().norm())
            sums[n] += float(named[n].grad.norm()) / norm if norm else float("nan")
    model.zero_grad(set_to_none=True)
    mean = {n: v / len(batches) for n, v in sums.items()}
    head = set(ctx.head_names)
    top = max(v for n, v in mean.items() if v == v and n not in head)  # over the pretrained tensors
    return {n: v / top if v == v and n not in head else 1.0 for n, v in mean.items()}  # the new head: 1


def test_auto_rgn_multipliers_match_independent_computation() -> None:
    ctx, strat = context("auto_rgn", n_train=96, augment=True)  # 6 batches of 16: the probe takes 5
    pretrained_like(ctx)  # BatchNorm is frozen: no dead residual branches with zero gradients
    runner = runner_for(ctx, strat)
    bn = own_params(ctx.model, (nn.BatchNorm2d,))
    names = [n for n in ctx.param_names if n not in bn]
    seen = []
    for e in range(2):
        gen = _epoch_generator(ctx.cfg.seed, 0, e)
        ctx.epoch_generator = gen
        state = gen.get_state()
        before = snapshot(ctx)
        plan = strat.plan(ctx, 0, e)
        assert torch.equal(gen.get_state(), state)  # probing does not consume the epoch's batch order
        assert all(torch.equal(p, before[n]) for n, p in snapshot(ctx).items())  # nothing stepped
        assert all(p.grad is None for p in ctx.model.parameters())
        batches = list(ctx.train_batches(5))
        assert len(batches) == 5
        expected = _independent_rgn(ctx, names, batches)
        assert set(plan.trainable) == set(names)  # BatchNorm parameters frozen (by module type)
        assert set(plan.lr_scale) == set(names)
        for n in names:
            assert plan.lr_scale[n] == pytest.approx(expected[n], rel=1e-4), n
        assert max(plan.lr_scale.values()) == 1.0
        assert plan.note["rgn_argmax"] not in ctx.head_names and plan.lr_scale[plan.note["rgn_argmax"]] == 1.0
        assert plan.reset_optimizer and plan.norm_mode == "eval"
        assert plan.lr_scale == rgn_multipliers(ctx, names)  # the exposed function gives the same
        seen.append(dict(plan.lr_scale))
        runner.train_epoch(plan, 1e-3, gen)
        named = ctx.named_params()
        lrs = {id(p): g["lr"] for g in runner.opt.param_groups for p in g["params"]}
        assert min(plan.lr_scale.values()) > 0
        for n in names:
            assert lrs[id(named[n])] == pytest.approx(1e-3 * plan.lr_scale[n])
        assert not runner.opt.state or all(int(s["step"]) == 6 for s in runner.opt.state.values())  # fresh Adam
    assert seen[0] != seen[1]  # recomputed every epoch
    assert runner.drift() > 1e-3  # the backbone trains: a new head's RGN does not divide its rates away


def test_train_batches_are_the_epochs_first_batches() -> None:
    from medft_bench.data.batches import iterate

    ctx, _ = context("ft", augment=True)
    gen = _epoch_generator(0, 0, 3)
    ctx.epoch_generator = gen
    probe = list(ctx.train_batches(2))
    engine = []
    for images, labels in iterate(ctx.data.train, 16, shuffle=True, generator=gen):
        engine.append((ctx.to_input(images, train=True), labels))
        if len(engine) == 2:
            break
    for (a, la), (b, lb) in zip(probe, engine):
        assert torch.equal(a, b) and torch.equal(la, lb)


# -- Auto-SNR -----------------------------------------------------------------------------------------------------
def _bn_eval(model: nn.Module) -> None:
    model.eval()  # the reference's train_mode: eval (the whole network)


def _independent_snr_per_example(ctx: Any, names: list[str], batches: list[Any]) -> dict[str, float]:
    model = ctx.model
    _bn_eval(model)
    named = dict(model.named_parameters())
    rows: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    for x, y in batches:
        for i in range(len(x)):
            model.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
            for n in names:
                rows[n].append(named[n].grad.detach().clone())
    model.zero_grad(set_to_none=True)
    out = {}
    for n in names:
        g = torch.stack(rows[n]).double()
        out[n] = float((g.mean(0) ** 2 / (g.var(0, unbiased=True) + 1e-8)).mean())
    return out


def _independent_snr_first_dim(ctx: Any, names: list[str], batches: list[Any]) -> dict[str, float]:
    model = ctx.model
    _bn_eval(model)
    named = dict(model.named_parameters())
    sums = {n: 0.0 for n in names}
    for x, y in batches:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        for n in names:
            g = named[n].grad.double()
            sums[n] += float((g**2 / (torch.var(g, dim=0, keepdim=True) + 1e-8)).mean())
    model.zero_grad(set_to_none=True)
    return {n: v / len(batches) for n, v in sums.items()}


def test_auto_snr_values_match_independent_computation() -> None:
    ctx, strat = context("auto_snr", n_train=30, batch_size=6)  # 5 batches of 6
    ctx.epoch_generator = _epoch_generator(0, 0, 0)
    names = [n for n in ctx.param_names if n not in own_params(ctx.model, (nn.BatchNorm2d,))]
    batches = list(ctx.train_batches(5))
    for p in ctx.model.parameters():
        p.requires_grad_(True)
    want = _independent_snr_per_example(ctx, names, batches)
    for impl in ("loop", "vmap"):
        # uneven chunks (4, 2) per batch: tests the running merge
        strat.params.update(variance="per_example", impl=impl, chunk_size=4)
        got = strat.snr(ctx)
        assert set(got) == set(names)
        for n in names:
            assert got[n] == pytest.approx(want[n], rel=2e-3, abs=1e-7), (impl, n)
    for p in ctx.model.parameters():
        p.requires_grad_(True)
    want = _independent_snr_first_dim(ctx, names, batches)
    strat.params.update(variance="first_dim")
    got = strat.snr(ctx)
    for n in names:
        assert got[n] == pytest.approx(want[n], rel=2e-3, abs=1e-7), n
    assert strat.hparams(ctx)["variance"] == "first_dim"


def test_auto_snr_is_right_where_gradients_share_storage() -> None:
    """A ViT's cls_token gradient is a view into pos_embed's at batch 1: the running update must not write into
    either gradient."""
    from medft_bench.strategies.auto_snr import per_example_snr

    ctx, _ = context("auto_snr", backbone="vit_tiny_patch16_224", n_train=6, batch_size=3)
    ctx.epoch_generator = _epoch_generator(0, 0, 0)
    names = ["cls_token", "pos_embed", "head.weight"]
    batches = list(ctx.train_batches(2))
    for p in ctx.model.parameters():
        p.requires_grad_(True)
    want = _independent_snr_per_example(ctx, names, batches)
    got = per_example_snr(ctx, names, n_batches=2, impl="loop")
    for n in names:
        assert got[n] == pytest.approx(want[n], rel=2e-3, abs=1e-7), n


def test_auto_snr_freezes_tensors_below_threshold() -> None:
    ctx, strat = context("auto_snr", params={"variance": "first_dim", "head": "new"})
    ctx.epoch_generator = _epoch_generator(0, 0, 0)
    snr = strat.snr(ctx)
    body = sorted({v for n, v in snr.items() if n not in ctx.head_names})
    assert len(body) >= 2
    thr = body[len(body) // 2]  # a threshold with backbone tensors on both sides
    strat.params["threshold"] = thr
    runner = runner_for(ctx, strat)
    plan, changed = run_epoch(ctx, strat, runner, 0, 0)
    above = {n for n, v in snr.items() if v >= thr}
    assert set(plan.trainable) == above | set(ctx.head_names)  # the head always trains
    assert above - set(ctx.head_names) and set(snr) - set(plan.trainable)
    assert changed == set(plan.trainable)  # frozen tensors did not move
    assert not plan.lr_scale and plan.reset_optimizer  # the rest at the base learning rate
    assert len(runner.opt.param_groups) == 1 and runner.opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert plan.note["snr_frozen_tensors"] == len(set(snr) - set(plan.trainable))
    assert not any(n in plan.trainable for n in own_params(ctx.model, (nn.BatchNorm2d,)))


def test_auto_snr_reference_statistic_by_hand() -> None:
    from medft_bench.strategies.auto_snr import first_dim_statistic

    # columns (1, 3) and (2, 4): unbiased variance 2 each; (1 + 4 + 9 + 16) / 2 / 4 elements = 3.75
    assert first_dim_statistic(torch.tensor([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(3.75, rel=1e-6)
    assert first_dim_statistic(torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(14 / 3, rel=1e-6)  # variance 1
    assert first_dim_statistic(torch.zeros(3, 2)) == 0.0  # no gradient: frozen at any positive threshold
    assert first_dim_statistic(torch.ones(1, 5)) == float("inf")  # no variance along dim 0: trains, as the reference


def test_auto_snr_defaults_are_the_reference_and_train_the_backbone() -> None:
    ctx, strat = context("auto_snr", epochs=3, n_train=96)
    hp = strat.hparams(ctx)
    assert (hp["variance"], hp["threshold"], hp["n_batches"], hp["norm_mode"]) == ("first_dim", 0.95, 5, "eval")
    assert hp["head"] == "probe" and [s.name for s in strat.stages(ctx)] == ["lp", "train"]
    pretrained_like(ctx)
    runner = runner_for(ctx, strat)
    assert strat.start_stage(ctx, 0) and strat.log["lp"]["lp_head"] == "trained"  # solved: no epochs
    backbone = []
    for e in range(3):
        plan, changed = run_epoch(ctx, strat, runner, 1, e)
        assert set(ctx.head_names) <= plan.trainable and plan.note["snr_threshold"] == 0.95
        backbone.append(plan.note["snr_backbone_trainable_tensors"])
        assert changed == set(plan.trainable)
    assert max(backbone) > 0, backbone  # more than the head trains


def test_auto_snr_per_example_threshold_fits_its_scale() -> None:
    ctx, strat = context("auto_snr", params={"variance": "per_example", "max_examples": 12, "head": "new"})
    ctx.epoch_generator = _epoch_generator(0, 0, 0)
    assert strat.threshold(ctx) == pytest.approx(2 / 12)  # twice pure noise's 1/n, not 0.95
    plan = strat.plan(ctx, 0, 0)
    assert set(ctx.head_names) <= plan.trainable and plan.note["snr_threshold"] == pytest.approx(2 / 12)
    hp = strat.hparams(ctx)
    assert hp["variance"] == "per_example" and hp["impl"] == "loop" and hp["threshold"] == "2/n examples"


def test_lp_ft_stage2_starts_from_lp_head_and_reuses_stored_lp(monkeypatch: pytest.MonkeyPatch, tmp_path: Any
                                                              ) -> None:
    from medft_bench.results.store import ResultStore
    from medft_bench.runner import run_or_reuse

    starts: list[dict[str, torch.Tensor]] = []
    original = LinearProbeThenFineTune.start_stage

    def spy(self: LinearProbeThenFineTune, ctx: Any, stage: int) -> bool:
        done = original(self, ctx, stage)
        if stage == 1:
            starts.append({k: v.detach().clone() for k, v in ctx.backbone.head.state_dict().items()})
        return done

    monkeypatch.setattr(LinearProbeThenFineTune, "start_stage", spy)
    cfg = cfg_for("lp_ft", epochs=2)
    # On the CPU: "bit for bit" below needs deterministic kernels, and CUDA's backward passes are not (this test
    # failed on an H200 for that reason alone).
    lp = compute_cell(cfg.with_strategy("lp"), RunEnv(device="cpu"))
    trained = compute_cell(cfg, RunEnv(device="cpu"))
    rec = trained.record
    assert rec["status"] == "ok" and rec["strategy"]["log"]["lp"]["lp_head"] == "trained"
    for k, v in lp.head_state.items():  # stage 1 = the LP cell: stage 2 starts from exactly its head
        assert torch.equal(starts[0][k], v), k
    assert [e["stage"] for e in rec["epochs"]] == ["lp", "ft", "ft", "ft"]
    start = rec["epochs"][1]
    assert start["start"] and start["val"] == lp.record["metrics"]["val"]  # the LP cell's validation, exactly
    assert rec["epochs"][2]["lr"] == pytest.approx(1e-4) and rec["epochs"][2]["norm_mode"] == "eval"
    per_stage = rec["costs"]["trainable_params_per_stage"]
    assert per_stage["ft"] == rec["costs"]["total_params"]
    assert rec["costs"]["cached_feature_epochs"] == 0 and rec["costs"]["fit_s"] > 0

    lp_out = run_or_reuse(cfg.with_strategy("lp"), RunEnv.at(tmp_path, device="cpu"))
    out = run_or_reuse(cfg, RunEnv.at(tmp_path, device="cpu"))
    log = out.record["strategy"]["log"]
    assert log["lp"] == {"lp_head": "reused", "lp_config_hash": lp_out.record["config_hash"],
                         "lp_train_s": lp_out.record["costs"]["train_s"]}
    costs = out.record["costs"]  # the reused probe's cost is LP-FT's too: the same whichever cell ran first
    assert costs["reused_train_s"] == lp_out.record["costs"]["train_s"] > 0
    assert costs["train_s"] > costs["reused_train_s"]
    assert out.record["epochs"][0] == {"stage": "lp", "epochs": 0, **log["lp"]}
    assert [e["stage"] for e in out.record["epochs"]] == ["lp", "ft", "ft", "ft"]
    assert out.record["epochs"][1]["val"] == lp_out.record["metrics"]["val"]
    for k, v in starts[0].items():  # the reused head is the refitted one, bit for bit
        assert torch.equal(starts[1][k], v), k
    assert log["ft_start_head"] == rec["strategy"]["log"]["ft_start_head"]
    final = ResultStore(tmp_path).load_head(cfg)  # and stage 2 runs identically (a fresh optimizer in both)
    for k, v in trained.head_state.items():
        assert torch.equal(final[k], v), k
    assert out.record["metrics"]["test"] == rec["metrics"]["test"]


def test_lp_ft_stage2_keeps_its_start_when_no_epoch_beats_it() -> None:
    rec = compute_cell(cfg_for("lp_ft", epochs=2, params={"ft_lr_scale": 1000.0}),
                   RunEnv(device="cpu")).record  # lr 1: wrecks
    start = next(e for e in rec["epochs"] if e.get("start"))
    assert rec["costs"]["best_epoch"] == -1 and rec["drift"]["ft"] == 0.0  # restored: the backbone is w0 again
    assert rec["metrics"]["val"] == start["val"]


def test_lp_ft_plans() -> None:
    ctx, strat = context("lp_ft", epochs=4)
    lp_stage, ft_stage = strat.stages(ctx)
    assert (lp_stage.epochs, ft_stage.epochs, ft_stage.lr) == (0, 4, pytest.approx(1e-4))
    assert ft_stage.min_epochs == 2 and ft_stage.eval_at_start
    lp_ctx, lp = context("lp", epochs=4)
    assert lp.stages(lp_ctx)[0].epochs == lp_stage.epochs
    p1 = strat.plan(ctx, 1, 0)
    assert p1.trainable == frozenset(ctx.param_names) and p1.norm_mode == "eval" and p1.reset_optimizer
    assert not strat.plan(ctx, 1, 1).reset_optimizer
    ctx, strat = context("lp_ft", epochs=4, params={"ft_epochs": 3, "ft_lr_scale": 0.5, "lp_solver": "adam",
                                                    "ft_norm_mode": "train"})
    lp_stage, ft_stage = strat.stages(ctx)
    assert (lp_stage.epochs, lp_stage.lr, ft_stage.epochs, ft_stage.lr) == (4, 1e-3, 3, pytest.approx(5e-4))
    p0 = strat.plan(ctx, 0, 0)
    assert (p0.trainable, p0.norm_mode) == (frozenset(ctx.head_names), "backbone_eval")
    assert strat.plan(ctx, 1, 0).norm_mode == "train"
    assert ctx.cfg.with_strategy("lp", strat._head.lp_params()).params() == {"solver": "adam"}


# -- kNN --------------------------------------------------------------------------------------------------------
def test_knn_vote_fractions_by_hand() -> None:
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])
    query = torch.tensor([[1.0, 0.05], [0.0, 2.0], [-5.0, 0.2]])
    got = knn_scores(train, labels, query, 3, 3, False, distance="cosine")
    # cosine: q0's neighbours 0, 1, then [0.1, 0.9]; q1's 2, 3, then [0.9, 0.1]; q2's 4, then [0,1], [0.1,0.9]
    np.testing.assert_allclose(got, [[2 / 3, 1 / 3, 0], [1 / 3, 2 / 3, 0], [0, 2 / 3, 1 / 3]], atol=1e-6)
    np.testing.assert_allclose(knn_scores(train, labels, 100 * query, 3, 3, False, distance="cosine"), got,
                               atol=1e-6)  # scale-free
    np.testing.assert_allclose(knn_scores(train, labels, query, 99, 3, False), [[0.4, 0.4, 0.2]] * 3, atol=1e-6)
    multi = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0]], dtype=torch.float32)
    got = knn_scores(train, multi, query[:1], 3, 2, True, distance="cosine")  # neighbours 0, 1, 3
    np.testing.assert_allclose(got, [[2 / 3, 2 / 3]], atol=1e-6)


def test_knn_default_is_medmnist_plus_euclidean_distance_on_raw_embeddings() -> None:
    train, labels = torch.tensor([[1.0, 0.2], [10.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1, 1])
    query = torch.tensor([[9.0, 1.0], [0.5, 0.5]])
    # q0 is nearest to [10, 0] by distance (1.41 against 8.03) and to [1, 0.2] by angle (5.0 against 6.3 degrees)
    np.testing.assert_allclose(knn_scores(train, labels, query[:1], 1, 2, False), [[0, 1]])
    np.testing.assert_allclose(knn_scores(train, labels, query[:1], 1, 2, False, distance="cosine"), [[1, 0]])
    # q1: distances 0.58, 9.51, 2.55: neighbours 0 and 2, a tie broken as topk orders it
    np.testing.assert_allclose(knn_scores(train, labels, query[1:], 2, 2, False), [[0.5, 0.5]])
    assert create_strategy("knn").params["distance"] == "euclidean"
    with pytest.raises(ValueError, match="euclidean, cosine"):
        create_strategy("knn", distance="manhattan")


def test_knn_cell_runs_without_training() -> None:
    ctx, strat = context("knn", params={"k": 5})
    assert strat.stages(ctx) == []
    pred = strat.predict(ctx)
    assert set(pred) == {"val", "test"}
    for p in pred.values():
        assert isinstance(p, np.ndarray) and p.shape == (32, 2)
        np.testing.assert_allclose(p.sum(1), 1.0)
        assert set(np.round(p.ravel() * 5, 6)) <= {0, 1, 2, 3, 4, 5}
    rec = compute_cell(cfg_for("knn")).record
    assert rec["status"] == "ok" and rec["costs"]["epochs_run"] == 0 and rec["costs"]["trainable_params"] == 0
    assert rec["strategy"]["hparams"]["k"] == 11


# -- extensibility ----------------------------------------------------------------------------------------------
class _HeadBiasOnly(Strategy):
    name = "test_head_bias_only"
    description = "test: only the head's bias trains"
    defaults = {"scale": 1.0}

    def plan(self, ctx: Any, stage: int, epoch: int) -> EpochPlan:
        return EpochPlan(trainable=frozenset([n for n in ctx.head_names if n.endswith("bias")]),
                         norm_mode="frozen_eval", lr_scale={n: self.params["scale"] for n in ctx.head_names})


def test_strategy_defined_elsewhere_runs_through_run_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    strategy_names()
    register_strategy(_HeadBiasOnly)
    assert "test_head_bias_only" in strategy_names()
    cfg = cfg_for("test_head_bias_only", epochs=1, params={"scale": 2.0})
    rec = compute_cell(cfg).record
    assert rec["status"] == "ok", rec["error"]
    assert rec["costs"]["trainable_params"] == 2
    assert rec["strategy"]["hparams"] == {"scale": 2.0}
    with pytest.raises(ValueError, match="taken"):
        register_strategy(type("Other", (_HeadBiasOnly,), {}))


def _fake_distribution(root: Any, module: str, entry: str, cls_name: str, strategy_name: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(f"""
        from medft_bench.strategies.base import EpochPlan, Strategy

        class {cls_name}(Strategy):
            name = "{strategy_name}"
            description = "a plug-in strategy from another package"

            def plan(self, ctx, stage, epoch):
                return EpochPlan(trainable=frozenset(ctx.head_names))
        """))
    dist = root / f"{module}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[medft_bench.strategies]\n{entry} = {module}:{cls_name}\n")


def test_entry_point_plugin_is_discovered(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _fake_distribution(tmp_path, "medft_fake_plugin", "fake_plugin_strategy", "FakePlugin", "fake_plugin_strategy")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.delitem(sys.modules, "medft_fake_plugin", raising=False)
    names = strategy_names()
    assert "fake_plugin_strategy" in names and BUILTIN <= set(names)
    assert get_strategy("fake_plugin_strategy").__module__ == "medft_fake_plugin"
    assert create_strategy("fake_plugin_strategy").description.startswith("a plug-in")
    monkeypatch.delitem(sys.modules, "medft_fake_plugin", raising=False)


def test_entry_point_plugin_with_wrong_name_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    _fake_distribution(tmp_path, "medft_fake_plugin2", "declared_name", "FakePlugin2", "actual_name")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.raises(MedftError, match="registered as 'declared_name'"):
        strategy_names()
    monkeypatch.delitem(sys.modules, "medft_fake_plugin2", raising=False)


def test_registry_restored_after_plugin_tests() -> None:
    names = strategy_names()
    assert "fake_plugin_strategy" not in names and "test_head_bias_only" not in names


# -- faithfulness: drift, eval mode, strategies that do not apply ------------------------------------------------
def _drift_after_steps(strategy: str, params: dict[str, Any] | None = None) -> float:
    ctx, strat = build_context(cfg_for(strategy, n_train=320, params=params), RunEnv(device="cpu"))  # 20 steps of 16
    pretrained_like(ctx)
    strat.setup(ctx)  # w0 (the penalty's and the drift's) after the BatchNorm scales are set
    runner = runner_for(ctx, strat)
    run_epoch(ctx, strat, runner, 0, 0)
    return runner.drift()


def test_l1_sp_moves_the_backbone_and_alpha_point_one_would_pin_it() -> None:
    ft = _drift_after_steps("ft")
    l1 = _drift_after_steps("l1_sp")
    pinned = _drift_after_steps("l1_sp", {"alpha": 0.1})
    assert ft > 0 and l1 >= 0.25 * ft, (l1, ft)  # the default lets the data move the weights
    assert pinned < 0.5 * l1, (pinned, l1)  # alpha 0.1 (L2-SP's) holds them near w0 under Adam
    assert create_strategy("l1_sp").params["alpha"] == 1e-4 and create_strategy("l2_sp").params["alpha"] == 0.1


def test_eval_norm_mode_is_the_whole_network_in_eval() -> None:
    ctx, _ = build_context(cfg_for("auto_rgn", backbone="vgg19"), RunEnv(device="cpu"))
    ctx.apply_modes("eval")
    assert not any(m.training for m in ctx.model.modules())  # VGG-19's dropout too, as train_mode: eval
    ctx.apply_modes("backbone_eval")
    assert ctx.backbone.head.training and not ctx.model.classifier[5].training  # fc7's dropout off for probing


def test_a_strategy_that_does_not_apply_is_skipped_with_its_reason() -> None:
    from medft_bench.errors import NotApplicable

    with pytest.raises(NotApplicable, match="norm_only.*no normalisation layers"):
        build_context(cfg_for("norm_only", backbone="vgg19"), RunEnv(device="cpu"))
    with pytest.raises(ValueError, match="solver must be one of"):  # a bad value is a usage error, not a skip
        create_strategy("lp", solver="sgd")
    with pytest.raises(ValueError, match="variance must be one of"):
        create_strategy("auto_snr", variance="per_batch")
    with pytest.raises(ValueError, match="ft_norm_mode must be one of"):
        create_strategy("lp_ft", ft_norm_mode="training")
    ctx, strat = build_context(cfg_for("norm_only"), RunEnv(device="cpu"))  # ResNet has BatchNorm: it applies
    assert strat.check(ctx) is None


def test_ft_norm_mode_control_freezes_batchnorm_statistics() -> None:
    from medft_bench.strategies import create_strategy

    ctx, _ = build_context(CellConfig(tier="unit", dataset="pneumoniamnist", backbone="resnet18", strategy="ft",
                                      img_size=32, weights="random", synthetic=True,
                                      synthetic_splits=(("train", 32), ("val", 16), ("test", 16))))
    assert create_strategy("ft").plan(ctx, 0, 0).norm_mode == "train"
    assert create_strategy("ft", norm_mode="eval").plan(ctx, 0, 0).norm_mode == "eval"
    with pytest.raises(ValueError, match="'train' or 'eval'"):
        create_strategy("ft", norm_mode="frozen")
    cell = CellConfig(tier="unit", dataset="pneumoniamnist", backbone="resnet18", strategy="ft", img_size=32,
                      weights="random", synthetic=True, synthetic_splits=(("train", 32), ("val", 16), ("test", 16)),
                      strategy_params=freeze_params({"norm_mode": "eval"}),
                      train=TrainSettings(epochs=1, batch_size=16, patience=0))
    rec = compute_cell(cell, RunEnv(progress=False)).record
    assert rec["status"] == "ok" and rec["strategy"]["hparams"]["norm_mode"] == "eval"
    assert {e["norm_mode"] for e in rec["epochs"] if "norm_mode" in e} == {"eval"}


def test_ft_eval_is_ft_with_frozen_batchnorm_statistics_under_its_own_name() -> None:
    from torch import nn

    cell = CellConfig(tier="unit", dataset="pneumoniamnist", backbone="resnet18", strategy="ft_eval", img_size=32,
                      weights="random", synthetic=True, synthetic_splits=(("train", 32), ("val", 16), ("test", 16)))
    ctx, strat = build_context(cell, RunEnv(device="cpu"))
    plan = strat.plan(ctx, 0, 0)
    assert plan.trainable == frozenset(ctx.param_names) and plan.norm_mode == "eval"
    ctx.apply_modes(plan.norm_mode)
    bn = next(m for m in ctx.model.modules() if isinstance(m, nn.BatchNorm2d))
    before = bn.running_mean.clone()
    images, labels = next(ctx.train_batches(1))
    ctx.loss(ctx.model(images), labels).backward()
    assert torch.equal(bn.running_mean, before)  # a training forward leaves the statistics as they were
    assert cell.cell_id.endswith("-ft_eval-seed0") and not strat.in_study


@pytest.mark.parametrize(("strategy", "params", "message"), [
    ("knn", {"k": True}, "k must be an integer"),  # would run as k=1
    ("knn", {"k": 2.5}, "k must be an integer"),  # would run as k=2
    ("knn", {"k": "abc"}, "k must be an integer"),  # failed only after the cell had computed
    ("knn", {"k": None}, "k must be an integer"),
    ("lp", {"l2_min": "small"}, "l2_min must be a number"),
    ("ft", {"norm_mode": 1}, "norm_mode must be a string"),
])
def test_a_parameter_of_the_wrong_type_is_refused_when_the_strategy_is_built(strategy: str, params: dict,
                                                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_strategy(strategy, **params)
    assert create_strategy("lp", l2_min=1).params["l2_min"] == 1  # an int where a float is expected is fine


def test_auto_snr_starts_from_the_lp_cells_head(tmp_path: Any) -> None:
    """The adaptive stage starts from the LP cell's stored head (reused, its cost counted), so its first statistic
    is taken with a trained head, as the reference's; the head then trains in every epoch."""
    from medft_bench.runner import run_or_reuse

    cfg = cfg_for("auto_snr", epochs=2)
    lp = run_or_reuse(cfg.with_strategy("lp"), RunEnv.at(tmp_path, device="cpu"))
    seen: dict[str, torch.Tensor] = {}
    original = AutoSNR.plan

    def spy(self: AutoSNR, ctx: Any, stage: int, epoch: int) -> EpochPlan:
        if (stage, epoch) == (1, 0):
            seen.update({k: v.detach().clone() for k, v in ctx.backbone.head.state_dict().items()})
        return original(self, ctx, stage, epoch)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AutoSNR, "plan", spy)
        rec = run_or_reuse(cfg, RunEnv.at(tmp_path, device="cpu")).record
    head = ResultStore(tmp_path).load_head(cfg.with_strategy("lp"))
    for k, v in head.items():
        assert torch.equal(seen[k], v), k
    assert rec["strategy"]["log"]["lp"]["lp_head"] == "reused"
    assert rec["costs"]["reused_train_s"] == lp.record["costs"]["train_s"] > 0
    assert [e["stage"] for e in rec["epochs"]] == ["lp", "train", "train"]
    assert all(e["adaptive_backbone_tensors"] >= 0 for e in rec["epochs"][1:])


def test_auto_snr_first_epoch_is_not_set_by_the_heads_initial_scale() -> None:
    """The reference statistic's 1e-8 makes it scale-dependent: a new head scaled down shrinks every backbone
    gradient and changes which tensors pass in epoch 0. From the probe's head (the default) the decision does not
    depend on how the new head was initialised."""
    def first_plan(head: str, scale: float) -> frozenset[str]:
        ctx, strat = context("auto_snr", params={"head": head}, n_train=96)
        pretrained_like(ctx)
        with torch.no_grad():
            ctx.backbone.head.weight.mul_(scale)
        runner_for(ctx, strat)  # the feature cache the solve reads
        strat.start_stage(ctx, 0)
        ctx.epoch_generator = _epoch_generator(0, 0, 0)
        return strat.plan(ctx, len(strat.stages(ctx)) - 1, 0).trainable

    assert first_plan("probe", 1.0) == first_plan("probe", 1e-3)
    assert first_plan("new", 1.0) != first_plan("new", 1e-3)  # the failure the probe's head removes


def test_surgical_names_its_block_as_a_variant_of_its_own() -> None:
    assert create_strategy("surgical").variant() == ""
    assert create_strategy("surgical", block="layer2").variant() == "block=layer2"
    assert create_strategy("ft", norm_mode="eval").variant() == ""  # an ordinary parameter: not a row of its own


def test_built_in_strategies_declare_the_labels_records_carry() -> None:
    """The labels the leaderboard shows (tests/unit/test_leaderboard.py reads them from records) come from here."""
    from medft_bench.strategies.registry import get_strategy

    assert get_strategy("lp_ft").display_label() == "LP-FT" and get_strategy("knn").label == "kNN"
