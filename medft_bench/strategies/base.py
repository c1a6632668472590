"""The strategy interface: the questions the engine asks, never "which strategy are you?".

A strategy answers: which stages are there (epochs, learning rate)? At each epoch, which parameters train,
with which per-parameter learning-rate multipliers, and which modules run in eval mode? Anything to add
to the loss? Anything to load instead of training a stage? Strategies that do not train at all (kNN)
return predictions from ``predict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.training.context import CellContext

# How normalisation and dropout layers run during training, recorded with every result:
# train          every module in train mode (BatchNorm statistics update)
# frozen_eval    BatchNorm layers whose parameters are all frozen run in eval mode (statistics frozen)
# eval           the whole network in eval mode (BatchNorm statistics frozen, no dropout), as the Auto-RGN
#                reference code's ``train_mode: eval``
# backbone_eval  the whole model in eval mode except the head (the frozen backbone of linear probing)
NORM_MODES = ("train", "frozen_eval", "eval", "backbone_eval")

# The tuned protocol's default sweep of the settings' learning rate: log-spaced around the study's 1e-3, the range
# Lee et al. (2023) and Kumar et al. (2022) searched for fine-tuning.
TUNED_LR_GRID = (1e-5, 1e-4, 1e-3, 1e-2)


@dataclass(frozen=True)
class Stage:
    """A run of epochs with its own cosine schedule, early stopping and best-checkpoint restore."""

    name: str
    epochs: int
    lr: float
    min_epochs: int = 0  # early stopping may not end the stage before this many epochs
    early_stopping: bool = True
    # Evaluate (and log) the validation split before the first epoch; that starting state is then a candidate
    # for the stage's best checkpoint (kept as epoch -1 when no epoch beats it).
    eval_at_start: bool = False
    # The first epoch (0-based) whose checkpoint may be kept: earlier epochs are evaluated and logged but are not
    # candidates, because the method has not done what it says yet (gradual unfreezing before every block is
    # trainable). 0: every epoch (and the start, with ``eval_at_start``).
    first_candidate: int = 0


def check_norm_mode(value: Any, what: str) -> None:
    """Refuse a norm mode outside ``NORM_MODES``; ``what`` names the parameter (a strategy's is checked when
    the strategy is created, before any cell runs)."""
    if value not in NORM_MODES:
        raise ValueError(f"{what} must be one of {NORM_MODES}, got {value!r}")


@dataclass
class EpochPlan:
    """What trains during one epoch and how."""

    trainable: frozenset[str]
    norm_mode: str = "train"
    lr_scale: Mapping[str, float] = field(default_factory=dict)  # per parameter; 1.0 when absent
    reset_optimizer: bool = False  # rebuild the optimizer, dropping moment state (Auto-RGN reference)
    note: dict[str, Any] = field(default_factory=dict)  # recorded in the epoch log
    # Plans that take over within the epoch, as (step of the epoch, plan from that step on) in step order: a
    # schedule defined in optimizer steps (gradual unfreezing in fewer epochs than phases). The engine applies
    # each at its step as it applies an epoch's plan (moments kept for tensors that keep training).
    switches: tuple[tuple[int, EpochPlan], ...] = ()

    def __post_init__(self) -> None:
        check_norm_mode(self.norm_mode, "norm_mode")
        steps = [k for k, _ in self.switches]
        if steps != sorted(set(steps)) or any(k <= 0 for k in steps):
            raise ValueError(f"switches must be at increasing steps > 0 of the epoch, got {steps}")

    def plans(self) -> list[EpochPlan]:
        """This plan and the plans that take over within its epoch, in order."""
        return [self, *(p for _, p in self.switches)]


class Strategy:
    """Base class. Subclasses set ``name``, ``label``, ``description``, ``defaults`` and override what they need."""

    name: ClassVar[str] = ""
    # How tables and plots name the strategy (e.g. "LP-FT"); written into every record. Empty: the name.
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    defaults: ClassVar[dict[str, Any]] = {}
    # Parameters whose values may have more than their default's type (surgical's block: an index or a name).
    param_types: ClassVar[dict[str, tuple[type, ...]]] = {}
    # Part of every cell's hash with the defaults: bump it with any change of what the strategy does, so that no
    # record computed by the old behaviour is reused.
    version: ClassVar[int] = 1
    # Parameters whose non-default values make a leaderboard row of their own (surgical's block: Lee et al. report
    # surgical fine-tuning per block); other parameters' cells supersede one another as configurations of one cell.
    row_params: ClassVar[tuple[str, ...]] = ()
    in_study: ClassVar[bool] = False  # one of the eight strategies of Davila et al. (2024)
    # The learning rates (of the settings' ``lr``) the tuned protocol tries; () when nothing trains with one.
    lr_grid: ClassVar[tuple[float, ...]] = TUNED_LR_GRID

    @classmethod
    def display_label(cls) -> str:
        """The label tables show: ``label``, or ``name`` when the strategy declares none."""
        return cls.label or cls.name

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            valid = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(f"strategy {self.name!r} has no parameter(s) {sorted(unknown)}; valid: {valid}")
        for key, value in params.items():
            _check_type(self.name, key, value, self.defaults[key], self.param_types.get(key))
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.log: dict[str, Any] = {}  # facts decided while running (e.g. reuse), recorded with the result
        # Training seconds of results loaded from other cells (LP-FT's reused probe): part of this cell's cost,
        # so that a cell costs the same whether or not the cell it reuses ran first.
        self.reused_train_s: float = 0.0

    def variant(self) -> str:
        """``key=value`` of the ``row_params`` given other values than their defaults ("" when none): the record's
        ``strategy.variant``, which the leaderboard shows as a row of its own."""
        return ",".join(f"{k}={self.params[k]}" for k in self.row_params if self.params[k] != self.defaults[k])

    def hparams(self, ctx: CellContext) -> dict[str, Any]:
        """The effective hyperparameters, recorded with the result (resolve defaults that depend on ctx)."""
        return dict(self.params)

    def tuning_grid(self) -> tuple[float, ...]:
        """The learning rates the tuned protocol sweeps for this strategy; () when it has none to tune (it then
        runs exactly as under the study's protocol). A strategy that only predicts (``predict``) has none: its
        trials could not be scored without its test predictions."""
        if type(self).predict is not Strategy.predict:
            return ()
        return tuple(self.lr_grid)

    def reused_cells(self, cfg: CellConfig) -> tuple[CellConfig, ...]:
        """Other cells whose stored results this cell reuses when they exist (LP-FT: the LP cell's head).
        A cluster driver runs them first and ships their results; without them the cell computes its own."""
        return ()

    def check(self, ctx: CellContext) -> str | None:
        """Why this strategy does not apply to the cell's backbone or task, or None when it does. A cell whose
        strategy does not apply is skipped with the reason (``errors.NotApplicable``), never degraded."""
        return None

    def setup(self, ctx: CellContext) -> None:
        """Called once after the model is built and before training (snapshot w0, add adapters...)."""

    def stages(self, ctx: CellContext) -> list[Stage]:
        s = ctx.settings
        return [Stage("train", s.epochs, s.lr)]

    def plan(self, ctx: CellContext, stage: int, epoch: int) -> EpochPlan:
        raise NotImplementedError

    def start_stage(self, ctx: CellContext, stage: int) -> bool:
        """Return True when the stage's result is in place without epochs: loaded from another cell, or solved
        (the linear probe's convex fit). Its time counts as training (``costs.fit_s``); what it decided goes
        into ``self.log[stage_name]``, which the engine records as the stage's entry."""
        return False

    def regularizer(self, ctx: CellContext) -> torch.Tensor | None:
        """A term added to the training loss at every step (differentiated by autograd), or None."""
        return None

    def add_penalty_grad(self, ctx: CellContext) -> torch.Tensor | None:
        """For a penalty whose gradient has a closed form: after each backward pass, add the gradient to the
        parameters' ``.grad`` in place and return the penalty's value (for the logged loss); None if none.
        Cheaper than ``regularizer`` for penalties over every weight, where autograd's graph costs passes."""
        return None

    def effective_weights(self, ctx: CellContext) -> dict[str, torch.Tensor]:
        """The weights the network computes with, by parameter name; the record's ``drift`` compares them with
        w0. A strategy that reparameterises weights (LoRA: W + BA) returns the merged ones under the original
        parameters' names and leaves out the extra parameters."""
        return {n: p.detach() for n, p in ctx.named_params().items()}

    def incomplete(self, ctx: CellContext) -> str | None:
        """Why the method did not run as its reference specifies in this cell (a schedule cut short, a probe on
        fewer batches), or None when it did: the record's ``strategy.complete``. Asked after training."""
        return None

    def predict(self, ctx: CellContext) -> dict[str, Any] | None:
        """Scores per split ("val", "test") as (N, C) probability arrays (numpy) for strategies that do not
        train; None for those that do."""
        return None


def _check_type(strategy: str, key: str, value: Any, default: Any, types: tuple[type, ...] | None = None) -> None:
    """A parameter's value must have its default's type (an int where the default is an int: ``k=2.5`` would run as
    k=2, ``k=true`` as k=1), or one of ``types`` when the strategy declares them (``Strategy.param_types``); a
    float default takes an int too; a default of None takes anything."""
    if types is not None:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"strategy {strategy!r}: parameter {key} must be one of "
                             f"{', '.join(t.__name__ for t in types)} (default {default!r}), got {value!r}")
        return
    if default is None:
        return
    kind = type(default)
    ok = (isinstance(value, bool) if kind is bool
          else isinstance(value, int) and not isinstance(value, bool) if kind is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float
          else isinstance(value, kind))
    if not ok:
        name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(kind, kind.__name__)
        raise ValueError(f"strategy {strategy!r}: parameter {key} must be {name} (default {default!r}), "
                         f"got {value!r}")
