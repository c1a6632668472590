"""The linear probe's head as another strategy's starting point: the ``lp`` cell's solved head, reused from its
stored record when there is one, else solved in the cell itself (the same head: the solve is deterministic).

LP-FT starts its fine-tuning stage from it (Kumar et al. 2022); Auto-SNR starts from it because its statistic
needs a trained head (Lee et al. 2023 fine-tune a pretrained head of the same label space).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from medft_bench.results.store import reused_head
from medft_bench.strategies.base import Stage, Strategy
from medft_bench.strategies.finetune import LinearProbe

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.training.context import CellContext


class ProbedHead:
    """Stage 0 of a strategy that starts from the probe: :meth:`stage` to list, :meth:`start` to run it."""

    def __init__(self, solver: str = LinearProbe.defaults["solver"]) -> None:
        self.solver = solver
        self.probe = LinearProbe(**self.lp_params())

    def lp_params(self) -> dict[str, Any]:
        """The ``lp`` cell's parameters (defaults left out: the same config hash as the LP cell's)."""
        return {} if self.solver == LinearProbe.defaults["solver"] else {"solver": self.solver}

    def lp_cell(self, cfg: CellConfig) -> CellConfig | None:
        """The ``lp`` cell whose stored head is reused, or None when no cell holds this probe."""
        lp_cfg = cfg.with_strategy("lp", self.lp_params())
        if cfg.protocol == "study":
            return lp_cfg
        # A tuned trial: the solved probe has no learning rate, so the study's LP cell holds this very head
        # (shared by every trial); an epoch-by-epoch probe trains at the trial's rate and is never reused.
        return None if self.probe.tuning_grid() else dataclasses.replace(lp_cfg, protocol="study", lr_grid=())

    def reused_cells(self, cfg: CellConfig) -> tuple[CellConfig, ...]:
        lp_cfg = self.lp_cell(cfg)
        return () if lp_cfg is None else (lp_cfg,)

    def stage(self, ctx: CellContext) -> Stage:
        return dataclasses.replace(self.probe.stages(ctx)[0], name="lp")

    def start(self, ctx: CellContext, owner: Strategy) -> bool:
        """Put the probe's head in place: loaded from the LP cell's stored record (True: no epochs to run; its
        training time becomes ``owner.reused_train_s``) or solved here (the probe's own answer). What happened
        goes into ``owner.log["lp"]``."""
        lp_cfg = self.lp_cell(ctx.cfg)
        reused = reused_head(ctx.store, lp_cfg) if lp_cfg is not None else None
        if reused is None:
            done = self.probe.start_stage(ctx, 0)
            owner.log["lp"] = {"lp_head": "trained", "lp_config_hash": lp_cfg.config_hash if lp_cfg else None,
                               **self.probe.log.get("lp", {})}
            return done
        module = ctx.backbone.head
        ref = next(iter(module.parameters()))
        with torch.no_grad():
            module.load_state_dict({k: v.to(device=ref.device) for k, v in reused.state.items()})
        owner.reused_train_s = reused.train_s
        owner.log["lp"] = {"lp_head": "reused", "lp_config_hash": reused.config_hash,
                           "lp_train_s": owner.reused_train_s}
        return True
