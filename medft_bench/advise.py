"""``python -m medft_bench advise``: which fine-tuning strategy for one dataset and backbone, at a share of the
full grid's compute, chosen on validation only.

The full grid is every candidate strategy x every seed under the tuned protocol (each cell a sweep of learning
rates). The race spends at most ``budget`` of that grid's estimated training time (docs/advise.md):

1. **screen** (the first seed): each strategy that trains with a learning rate runs ``SCREEN_EPOCHS`` epoch at its
   default rate (Egele et al. 2023: one epoch, then keep the top few); a strategy without a rate to tune (LP's solved
   head, kNN) runs its full cell, which costs about as much as a screen and is final;
2. **full cells** (the first seed): the top ``KEEP`` share of the screened strategies (fewer when the budget is
   short) run their grid cell (the whole sweep);
3. **finalists** (every seed): the best full cells on validation, as many as the budget leaves room for (at least
   one), and every strategy without a rate, run their grid cells at the other seeds;
4. **the answer**: the leaderboard's separation (:func:`medft_bench.leaderboard.separation.separate`: the best
   on validation, Games-Howell's simultaneous intervals over seeds and images, the not-separable set) over the
   finalists, with VALIDATION in the role the leaderboard gives test. When it separates no finalist from the
   best, the data cannot tell at this budget: the answer says so and puts the cheapest of the set first.

Nothing of the test split is read until the answer is fixed: :func:`race` sees only :class:`Observation`\\ s
(validation scores, their image resamples, costs); :func:`scores_on_test` reads the finalists' test metrics
afterwards, to report them. Every run is an ordinary record in the results directory; the screens are filed
under the tier ``<tier>_screen`` so that no leaderboard group mixes them with full-budget cells, and the full
cells are the grid's own, so a later grid reuses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from medft_bench.errors import MedftError
from medft_bench.vocabulary import METRIC_NAMES, RANKING_METRIC

if TYPE_CHECKING:
    from medft_bench.config import CellConfig
    from medft_bench.leaderboard.separation import Separation
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import Outcome

SCREEN_EPOCHS = 1  # Egele et al. 2023: every candidate one epoch, then the top few in full
SCREEN_TIER = "_screen"  # suffix of a screen's tier: a group of its own in the leaderboard
KEEP = 0.5  # share of the screened strategies that get a full cell (successive halving's rate)
DEFAULT_BUDGET = 0.35  # docs/advise.md: the measured agreement at this share
SCREEN, FULL = "screen", "full"


class Skip(Exception):
    """A candidate that does not run here (the strategy does not apply, its data are missing): left out."""


@dataclass(frozen=True)
class Observation:
    """One run as the race sees it: the validation score (the ranking metric; a failed run at chance), that score
    under each shared resample of the validation images (None without per-image predictions), its training
    seconds (a tuned cell: the whole sweep) and whether an earlier run computed it."""

    val: float
    draws: np.ndarray | None
    cost_s: float
    reused: bool = False
    failed: bool = False


Evaluate = Callable[[str, int, str], Observation]  # (strategy, seed, SCREEN or FULL) -> its observation


@dataclass(frozen=True)
class Plan:
    """What the race runs: the candidates in order, those without a learning rate to tune (``fixed``), the seeds
    (the first one races), the budget as a share of the grid, each strategy's trials per grid cell and a
    screen's epochs over a trial's (to extrapolate a grid cell's cost from its screen)."""

    strategies: tuple[str, ...]
    fixed: frozenset[str]
    seeds: tuple[int, ...]
    budget: float
    trials: dict[str, int]
    screen_share: float

    def __post_init__(self) -> None:
        check_budget(self.budget)
        if not self.seeds:
            raise MedftError("advise needs at least one seed")


def check_budget(budget: float) -> None:
    if not 0 < budget <= 1:  # NaN too
        raise MedftError(f"--budget {budget:g} is out of range: a share of the full grid, above 0 and at most 1")


@dataclass(frozen=True)
class Step:
    strategy: str
    seed: int
    rung: str
    obs: Observation


@dataclass
class Decision:
    """The race's result: every run, the finalists, the separation over them (None with one finalist), the
    answer (``recommended``: the first pick first) and what it cost against the grid's estimate."""

    steps: list[Step]
    finalists: list[str]
    separation: Separation | None
    recommended: list[str]
    separated: bool  # whether the final comparison showed some finalist below the best
    spent_s: float
    grid_estimate_s: float
    cell_cost_s: dict[str, float]  # each strategy's (estimated) grid cell cost, per seed
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def runs(self, rung: str | None = None) -> list[Step]:
        return [s for s in self.steps if rung is None or s.rung == rung]

    def mean_val(self, strategy: str) -> float:
        return float(np.mean([s.obs.val for s in self.steps if s.strategy == strategy and s.rung == FULL]))


def race(plan: Plan, evaluate: Evaluate) -> Decision:
    """Run the race of ``plan`` with ``evaluate`` (:class:`Observation`\\ s only: no test score reaches here)."""
    from medft_bench.leaderboard.separation import Evidence, separate

    steps: list[Step] = []
    skipped: dict[str, str] = {}
    notes: list[str] = []
    first, rest = plan.seeds[0], plan.seeds[1:]

    def run(strategy: str, seed: int, rung: str) -> Observation | None:
        if strategy in skipped:
            return None
        try:
            obs = evaluate(strategy, seed, rung)
        except Skip as why:
            skipped[strategy] = str(why)
            return None
        steps.append(Step(strategy, seed, rung, obs))
        return obs

    # 1. screen: a short run at the default rate; a strategy without a rate runs its (cheap, final) grid cell
    screen = {s: o for s in plan.strategies
              if (o := run(s, first, FULL if s in plan.fixed else SCREEN)) is not None}
    if not screen:
        raise MedftError("no candidate strategy ran: " + "; ".join(f"{s}: {w}" for s, w in skipped.items()))

    def cell_cost(s: str) -> float:
        """A grid cell's training seconds: the mean of the measured ones, else the screen's scaled to a sweep."""
        full = [st.obs.cost_s for st in steps if st.strategy == s and st.rung == FULL]
        if full:
            return float(np.mean(full))
        return screen[s].cost_s / plan.screen_share * plan.trials.get(s, 1)

    def spent() -> float:
        return sum(st.obs.cost_s for st in steps)

    alive = [s for s in plan.strategies if s in screen]
    grid = sum(cell_cost(s) for s in alive) * len(plan.seeds)
    budget = plan.budget * grid
    fixed = [s for s in alive if s in plan.fixed]
    trained = sorted((s for s in alive if s not in plan.fixed), key=lambda s: (-screen[s].val, cell_cost(s)))
    reserve = sum(cell_cost(s) for s in fixed) * len(rest)  # the fixed strategies' other seeds: cheap, always run

    # 2. full cells for the top share of the screened, as many as leave room for two finalists' other seeds
    k = math.ceil(len(trained) * KEEP)

    def rung1_fits(k: int) -> bool:
        top = [cell_cost(s) for s in trained[:k]]
        finals = sorted(top, reverse=True)[:2]
        return spent() + reserve + sum(top) + sum(finals) * len(rest) <= budget

    while k > 1 and not rung1_fits(k):
        k -= 1
    if trained and not rung1_fits(k):
        notes.append(f"the budget ({plan.budget:.0%} of the grid) is too small for a race: one strategy was raced")
    full = {s: o for s in trained[:k] if (o := run(s, first, FULL)) is not None}

    # 3. finalists: the best full cells on validation, as many as the budget's rest pays the other seeds of
    ranked = sorted(full, key=lambda s: (-full[s].val, cell_cost(s)))
    m = len(ranked)
    while m > 1 and spent() + reserve + sum(cell_cost(s) for s in ranked[:m]) * len(rest) > budget:
        m -= 1
    finalists = [s for s in plan.strategies if s in ranked[:m] or s in fixed]
    for seed in rest:
        for s in finalists:
            run(s, seed, FULL)
    finalists = [s for s in finalists if s not in skipped]
    if not finalists:
        raise MedftError("no finalist ran all its seeds: " + "; ".join(f"{s}: {w}" for s, w in skipped.items()))

    # 4. the answer: the leaderboard's separation, validation in the role of test (cheapest first: ties)
    cost = {s: cell_cost(s) for s in alive if s not in skipped}
    order = sorted(finalists, key=lambda s: (cost[s], plan.strategies.index(s)))
    evidence = {}
    for s in order:
        obs = [st.obs for st in steps if st.strategy == s and st.rung == FULL]
        val = np.array([o.val for o in obs])
        draws = None if any(o.draws is None for o in obs) else np.stack([o.draws for o in obs], axis=1)
        evidence[s] = Evidence(val, val, draws, draws)
    if any(ev.test_draws is None for ev in evidence.values()):  # every interval alike: seeds only
        evidence = {s: Evidence(ev.test, ev.val) for s, ev in evidence.items()}
        notes.append("no per-image validation predictions for every run: intervals over seeds only")
    if len(rest) == 0:
        notes.append("one seed: no interval, so nothing can be separated")
    sep = separate(evidence) if len(evidence) > 1 else None
    kept = sep.not_separable if sep is not None else list(evidence)
    separated = sep is not None and len(kept) < len(evidence)
    if len(kept) > 1 and not separated:  # the data cannot tell: the cheapest of the set, not a winner
        cheapest = min(kept, key=lambda s: (cost[s], plan.strategies.index(s)))
        recommended = [cheapest, *(s for s in kept if s != cheapest)]
    else:
        recommended = list(kept)
    grid = sum(cost.values()) * len(plan.seeds)
    if spent() > plan.budget * grid:
        notes.append(f"spent {spent() / grid:.0%} of the grid's estimate, over the budget of {plan.budget:.0%}: the "
                     "estimate changed once full cells were measured, or the race's least (every screen, one full "
                     "cell, one finalist's seeds) costs more")
    return Decision(steps, finalists, sep, recommended, separated, spent(), grid, cost, notes, skipped)


# -- the race on real cells ---------------------------------------------------------------------------------------


def screen_cell(cfg: CellConfig) -> CellConfig:
    """A grid cell's screen: the study protocol (the default rate) for ``SCREEN_EPOCHS``, filed under a tier of
    its own."""
    return replace(cfg, tier=cfg.tier + SCREEN_TIER, protocol="study", lr_grid=(),
                   train=replace(cfg.train, epochs=min(SCREEN_EPOCHS, cfg.train.epochs)))


class CellEvaluator:
    """:data:`Evaluate` over the runner: each (strategy, seed, rung) is a cell reused or run with
    :func:`medft_bench.runner.attempt`; the outcome is kept (:meth:`outcome`) for the report, and the race gets
    its :class:`Observation`. ``on_run``: called with each outcome as it ends (the command line's lines)."""

    def __init__(self, cells: dict[tuple[str, int], CellConfig], env: RunEnv,
                 on_run: Callable[[str, Outcome], None] | None = None) -> None:
        self.cells = cells
        self.env = env
        self.on_run = on_run
        self.outcomes: dict[tuple[str, int, str], Outcome] = {}

    def __call__(self, strategy: str, seed: int, rung: str) -> Observation:
        from medft_bench.runner import Kind, attempt

        cfg = self.cells[(strategy, seed)]
        out = attempt(screen_cell(cfg) if rung == SCREEN else cfg, self.env)
        if self.on_run is not None:
            self.on_run(rung, out)
        if out.kind.skipped:
            raise Skip(out.message)
        if out.kind is Kind.ERROR:
            raise MedftError(out.message)
        self.outcomes[(strategy, seed, rung)] = out
        return observe(out)

    def outcome(self, strategy: str, seed: int, rung: str = FULL) -> Outcome:
        return self.outcomes[(strategy, seed, rung)]


def observe(out: Outcome) -> Observation:
    """What the race may know of a cell's outcome: its validation score (chance when the run failed or is no
    better than chance on validation, the leaderboard's rule), the score under the shared validation resamples,
    its training seconds."""
    from medft_bench.leaderboard import bootstrap
    from medft_bench.leaderboard.stats import chance_score
    from medft_bench.results import predictions

    view = out.view
    metrics = view.metrics or {}
    chance = chance_score(RANKING_METRIC, view.task, view.n_classes, metrics.get("majority"))
    value = (metrics.get("val") or {}).get(RANKING_METRIC)
    cost = float(view.costs.get("train_s") or 0.0)
    loaded = predictions.load(out.path, out.record, "val") if view.ok and out.path is not None else None
    w = None if loaded is None else bootstrap.weights(len(loaded[0]))
    if not view.ok or value is None or value <= chance:  # chance under every resample: the others keep their draws
        return Observation(chance, np.full(bootstrap.B, chance), cost, out.reused, True)
    draws = None if loaded is None else bootstrap.metric_draws(
        RANKING_METRIC, view.task, bootstrap.Predicted(*loaded), w)
    return Observation(float(value), draws, cost, out.reused)


def scores_on_test(evaluator: CellEvaluator, decision: Decision) -> dict[str, float | None]:
    """Each finalist's mean test score over its seeds (the ranking metric; a failed seed at chance), read once the
    answer is fixed, to report it beside the answer."""
    from medft_bench.leaderboard.stats import chance_score

    out: dict[str, float | None] = {}
    for s in decision.finalists:
        values = []
        for step in decision.steps:
            if step.strategy != s or step.rung != FULL:
                continue
            view = evaluator.outcome(s, step.seed).view
            value = view.test.get(RANKING_METRIC)
            chance = chance_score(RANKING_METRIC, view.task, view.n_classes, (view.metrics or {}).get("majority"))
            values.append(chance if not view.ok or value is None or value <= chance else value)
        out[s] = float(np.mean(values)) if values else None
    return out


def plan_for(cells: list[CellConfig], budget: float) -> tuple[Plan, dict[tuple[str, int], CellConfig]]:
    """The race's plan over one case's grid cells (one dataset, image size and backbone)."""
    from medft_bench.training.tuning import tuning_grid

    strategies = tuple(dict.fromkeys(c.strategy for c in cells))
    seeds = tuple(dict.fromkeys(c.seed for c in cells))
    by = {(c.strategy, c.seed): c for c in cells}
    first = {s: by[(s, seeds[0])] for s in strategies}
    trials = {s: max(1, len(tuning_grid(c))) if c.protocol == "tuned" else 1 for s, c in first.items()}
    fixed = frozenset(s for s, c in first.items() if not tuning_grid(replace(c, protocol="tuned")))
    epochs = {c.train.epochs for c in first.values()}
    share = min(SCREEN_EPOCHS, min(epochs)) / max(epochs)
    return Plan(strategies, fixed, seeds, budget, trials, share), by


def cases(cells: list[CellConfig]) -> dict[tuple[str, int, str], list[CellConfig]]:
    """The grid's cells by case: (dataset, image size, backbone)."""
    out: dict[tuple[str, int, str], list[CellConfig]] = {}
    for c in cells:
        out.setdefault((c.dataset, c.img_size, c.backbone), []).append(c)
    return out


def answer_json(case: tuple[str, int, str], decision: Decision, tests: dict[str, float | None],
                budget: float) -> dict[str, Any]:
    """The ``--json`` object of one case (strategy names as ``list strategies`` prints them)."""
    dataset, size, backbone = case
    sep = decision.separation
    return {
        "recommended": decision.recommended,
        "spent_s": round(decision.spent_s, 3),
        "grid_estimate_s": round(decision.grid_estimate_s, 3),
        "budget": budget,
        "dataset": dataset, "img_size": size, "backbone": backbone,
        "separated": decision.separated,
        "best_on_validation": None if sep is None else sep.best,
        "finalists": {s: {"val": decision.mean_val(s), "test": tests.get(s),
                          "picked": None if sep is None else sep.picked.get(s),
                          "cell_cost_s": round(decision.cell_cost_s[s], 3)} for s in decision.finalists},
        "runs": [{"strategy": st.strategy, "seed": st.seed, "rung": st.rung, "val": st.obs.val,
                  "cost_s": round(st.obs.cost_s, 3), "reused": st.obs.reused} for st in decision.steps],
        "skipped": decision.skipped,
        "notes": decision.notes,
    }


# -- the command line ---------------------------------------------------------------------------------------------


def strategy_label(strategy: str) -> str:
    from medft_bench.strategies.registry import get_strategy

    return get_strategy(strategy).display_label()


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.1f}"


def cli(args: Any) -> int:
    """``python -m medft_bench advise``: race each selected case, print the answer, write ``--json``."""
    import json
    import sys

    from medft_bench.io import atomic_write, json_safe
    from medft_bench.options import build_cells, check_device, register_folder_datasets
    from medft_bench.run_env import RunEnv
    from medft_bench.text import printable

    if args.protocol == "both":
        raise MedftError("advise races one grid: --protocol tuned (its default) or study, not both")
    if args.shard:
        raise MedftError("advise runs its own cells: --shard does not apply")
    args.protocol = args.protocol or "tuned"
    budget = DEFAULT_BUDGET if args.budget is None else args.budget
    check_budget(budget)
    register_folder_datasets(args)
    check_device(args.device)
    tier, cells = build_cells(args)
    if not cells:
        raise MedftError("the options select no cell")
    env = RunEnv.from_options(args)

    def line(text: str, err: bool = False) -> None:
        print(printable(text), file=sys.stderr if err else sys.stdout, flush=True)

    def on_run(rung: str, out: Outcome) -> None:
        if out.kind.skipped:
            line(f"  {rung:6s} {out.cfg.cell_id}: skipped ({out.kind.value})", err=True)
            return
        how = "reused" if out.reused else out.kind.value
        line(f"  {rung:6s} {out.cfg.cell_id}: {how}", err=True)

    answers = []
    for case, group in cases(cells).items():
        plan, by = plan_for(group, budget)
        dataset, size, backbone = case
        seeds = ",".join(map(str, plan.seeds))
        line(f"advise {dataset} ({size} px) x {backbone}: tier {tier.name}, {group[0].protocol} protocol, "
             f"{len(plan.strategies)} strategies, seeds {seeds}; budget {budget:.0%} of the full grid's training time")
        evaluator = CellEvaluator(by, env, on_run)
        decision = race(plan, evaluator)
        tests = scores_on_test(evaluator, decision)  # read now, after the answer is fixed
        _print(decision, tests, plan, line)
        answers.append(answer_json(case, decision, tests, budget))
    if args.json:
        try:
            data = answers[0] if len(answers) == 1 else answers
            atomic_write(args.json, json.dumps(json_safe(data), indent=1) + "\n")
        except OSError as exc:
            raise MedftError(f"--json {args.json}: cannot write it ({exc.strerror or exc})") from None
        line(f"answer written to {args.json}")
    return 0


def _print(d: Decision, tests: dict[str, float | None], plan: Plan, line: Callable[[str], None]) -> None:
    metric = METRIC_NAMES[RANKING_METRIC]
    epochs = round(1 / plan.screen_share) if plan.screen_share else 0
    fidelity = f"{SCREEN_EPOCHS} of {epochs} epochs at the default rate" if epochs > 1 else "the default rate"
    line(f"screen, seed {plan.seeds[0]} ({fidelity}; no rate to tune: the full cell):")
    full_first = {st.strategy for st in d.runs(FULL) if st.seed == plan.seeds[0]}

    def run_line(st: Step, mark: str) -> None:
        line(f"  {strategy_label(st.strategy):18s} val {metric} {_pct(st.obs.val):>5s}  {st.obs.cost_s:7.1f} s  {mark}")

    for st in [*d.runs(SCREEN), *(s for s in d.runs(FULL) if s.strategy in plan.fixed and s.seed == plan.seeds[0])]:
        run_line(st, "no rate: final" if st.strategy in plan.fixed else
                 "-> full cell" if st.strategy in full_first else "dropped")
    sweep = "the learning-rate sweep" if max(plan.trials.values()) > 1 else "one run"
    line(f"full cells, seed {plan.seeds[0]} ({sweep}):")
    for st in d.runs(FULL):
        if st.seed == plan.seeds[0] and st.strategy not in plan.fixed:
            run_line(st, "finalist" if st.strategy in d.finalists else "dropped")
    sep = d.separation
    line(f"answer over {len(d.finalists)} finalists, seeds {','.join(map(str, plan.seeds))} (chosen on validation; "
         "the leaderboard's set: Games-Howell over seeds and validation images):")
    line(f"  {'strategy':18s} {'val':>5s} {'vs best [95%]':>22s} {'picked':>6s} {'test*':>6s} {'cost/seed':>9s}")
    order = [*d.recommended, *(s for s in d.finalists if s not in d.recommended)]
    for s in order:
        vs = "" if sep is None or s == sep.best else sep.versus[s].diff
        text = "best" if sep is not None and s == sep.best else ""
        if vs:
            lo, hi = vs.interval or (None, None)
            text = f"{100 * vs.value:+.1f}" + ("" if lo is None else f" [{100 * lo:+.1f}, {100 * hi:+.1f}]")
        where = "" if s in d.recommended else " (below)"
        picked = "" if sep is None else f"{100 * sep.picked.get(s, 0):.0f}%"
        line(f"  {strategy_label(s):18s} {_pct(d.mean_val(s)):>5s} {text:>22s} {picked:>6s} {_pct(tests.get(s)):>6s} "
             f"{d.cell_cost_s[s]:8.1f}s{where}")
    if len(d.recommended) > 1 and not d.separated:
        line(f"the data cannot separate these {len(d.recommended)} at this budget: recommended the cheapest, "
             f"{strategy_label(d.recommended[0])}, not a winner")
    line("recommended: " + ", ".join(d.recommended) + ("   (first pick first)" if len(d.recommended) > 1 else ""))
    reused = sum(st.obs.cost_s for st in d.steps if st.obs.reused)
    share = d.spent_s / d.grid_estimate_s if d.grid_estimate_s else float("nan")
    line(f"compute: {d.spent_s:,.0f} s of training ({d.spent_s - reused:,.0f} s computed now, {reused:,.0f} s reused "
         f"from records) against an estimated {d.grid_estimate_s:,.0f} s for the full grid: {share:.0%}")
    for note in d.notes:
        line(f"note: {note}")
    for s, why in d.skipped.items():
        line(f"skipped: {s}: {why}")
    line(f"* test {metric}, mean over seeds: read after the answer was fixed, for the record; it chose nothing")
