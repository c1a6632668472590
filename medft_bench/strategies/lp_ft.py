"""LP-FT (Kumar, Raghunathan, Jones, Ma, Liang, ICLR 2022): linear probing, then full fine-tuning."""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from medft_bench.strategies.base import EpochPlan, Stage, Strategy, check_norm_mode
from medft_bench.strategies.probed_head import ProbedHead
from medft_bench.strategies.registry import register_strategy

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.training.context import CellContext


def head_fingerprint(ctx: CellContext) -> str:
    """sha256 of the head's tensors (names, shapes, bytes): equal heads, equal fingerprints."""
    h = hashlib.sha256()
    for k, v in sorted(ctx.backbone.head.state_dict().items()):
        t = v.detach().float().cpu().contiguous()
        h.update(f"{k}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@register_strategy
class LinearProbeThenFineTune(Strategy):
    """LP-FT as Kumar et al. define it. Stage 1 (``lp``): the linear probe, exactly the ``lp`` cell's (by
    default the converged L-BFGS probe on frozen features; ``lp_solver="adam"`` for the study's epoch-by-epoch
    probe). Stage 2 (``ft``): every parameter fine-tunes from the probed head, with a fresh optimizer at
    ``lr * ft_lr_scale`` for ``ft_epochs``, the network in ``ft_norm_mode`` (default ``eval``).

    Why stage 2 runs in eval mode by default: LP-FT's premise is that fine-tuning starts at the probe's
    optimum for the features the probe saw, so that the head does not distort the features in the first
    steps. The probe is fitted on eval-mode features (BatchNorm running statistics, no dropout). In train
    mode the very first step would see other features (batch statistics; VGG-19's dropout doubling the
    surviving fc7 units), and the probed head is then far from optimal for them: on the smoke tier stage 2
    began at a training loss of 6.5 (ResNet-50) and 87 (VGG-19) for two classes, against the probe's 0.4.
    In eval mode stage 2 starts at the probe's loss. ``ft_norm_mode="train"`` trains BatchNorm statistics
    as FT does.

    Reuse: when the cell has a results store holding an ok ``lp`` record of this configuration with its
    saved head, stage 1 loads that head (``log["lp"]["lp_head"] == "reused"``, with the LP cell's config
    hash); else it fits the probe itself (``"trained"``), which gives the same head: the L-BFGS fit is
    deterministic, and the epoch-by-epoch probe runs as stage index 0 with the engine's seeded batch order.
    Stage 2 starts by evaluating the validation split (the record's ``start`` entry): the probed head on
    unchanged features, so its metrics equal the LP cell's. ``log["ft_start_head"]`` fingerprints the head
    stage 2 starts from.

    Stage-2 defaults. ``ft_epochs = epochs``: the FT cell's budget (Kumar et al. compare at equal budgets;
    the solved probe costs no epochs). ``ft_lr_scale = 0.1``: Kumar et al. fine-tune with a smaller
    learning rate than they probe with. ``ft_min_epochs = ceil(ft_epochs / 2)``: early stopping may not end
    stage 2 before half of it. Starting from a converged head at a tenth of the learning rate, the first
    fine-tuning epochs move the features slowly and the validation metric can sit at the probe's value for
    a few epochs; with the study's patience of 3, early stopping would otherwise judge LP-FT on three short
    epochs of fine-tuning. At half the budget the cosine schedule has spent most of its large steps.
    """

    name = "lp_ft"
    version = 2  # 2: stage 1 is LP's version 2 solve
    label = "LP-FT"
    description = "LP-FT: the converged linear probe (the LP cell's head, reused when stored), then full " \
                  "fine-tuning at a tenth of the learning rate."
    in_study = True
    defaults = {"ft_epochs": None, "ft_lr_scale": 0.1, "ft_min_epochs": None, "ft_norm_mode": "eval",
                "lp_solver": "lbfgs"}
    # The sweep is of the settings' lr; stage 2 fine-tunes at lr * ft_lr_scale (0.1), so this grid gives the
    # fine-tuning stage FT's range, 1e-5..1e-2 (the solved probe of stage 1 has no learning rate).
    lr_grid = (1e-4, 1e-3, 1e-2, 1e-1)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        check_norm_mode(self.params["ft_norm_mode"], "lp_ft: ft_norm_mode")
        self._head = ProbedHead(self.params["lp_solver"])
        self._lp = self._head.probe
        self._ft_epochs_run = 0  # stage 2's epochs planned so far: none means LP-FT was LP

    def reused_cells(self, cfg: CellConfig) -> tuple[CellConfig, ...]:
        return self._head.reused_cells(cfg)

    def _ft_epochs(self, ctx: CellContext) -> int:
        given = self.params["ft_epochs"]
        return int(given) if given is not None else ctx.settings.epochs

    def _ft_min_epochs(self, ctx: CellContext) -> int:
        given = self.params["ft_min_epochs"]
        return int(given) if given is not None else math.ceil(self._ft_epochs(ctx) / 2)

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        return {"ft_epochs": self._ft_epochs(ctx), "ft_lr_scale": float(self.params["ft_lr_scale"]),
                "ft_lr": ctx.settings.lr * float(self.params["ft_lr_scale"]),
                "ft_min_epochs": self._ft_min_epochs(ctx), "ft_norm_mode": self.params["ft_norm_mode"],
                "lp_solver": self.params["lp_solver"], "lp": self._lp.hparams(ctx)}

    def check(self, ctx: CellContext) -> str | None:
        return self._lp.check(ctx)

    def stages(self, ctx: CellContext) -> list[Stage]:
        ft = Stage("ft", self._ft_epochs(ctx), ctx.settings.lr * float(self.params["ft_lr_scale"]),
                   min_epochs=self._ft_min_epochs(ctx), eval_at_start=True)
        return [self._head.stage(ctx), ft]

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        if stage == 0:
            return self._lp.plan(ctx, 0, epoch)
        self._ft_epochs_run = max(self._ft_epochs_run, epoch + 1)
        # Stage 2 starts with a fresh optimizer: no moment state from probing, as with a reused head.
        return EpochPlan(trainable=frozenset(ctx.param_names), norm_mode=self.params["ft_norm_mode"],
                         reset_optimizer=epoch == 0)

    def incomplete(self, ctx: CellContext) -> str | None:
        return None if self._ft_epochs_run else "stage 2 (fine-tuning) did not run: the cell is its linear probe"

    def start_stage(self, ctx: CellContext, stage: int) -> bool:
        if stage == 1:
            self.log["ft_start_head"] = head_fingerprint(ctx)
            return False
        return stage == 0 and self._head.start(ctx, self)
