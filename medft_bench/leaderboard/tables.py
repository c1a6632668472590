"""The leaderboard's tables as plain data (text cells with a style), built once and rendered three ways:
Markdown (:mod:`render_markdown`), rich and plain text (:mod:`render_rich`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medft_bench.gates import COLLINEAR
from medft_bench.leaderboard import bootstrap, references
from medft_bench.leaderboard.aggregate import (
    METRIC_NAMES,
    METRICS,
    Group,
    Row,
    protocol_pairs,
    survival,
)
from medft_bench.leaderboard.claims import METHOD, NOT_ENOUGH, SOURCE
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.names import canonical_name, strategy_sort_key
from medft_bench.leaderboard.recommend import MARGIN, Candidate, Recommendation, recommend
from medft_bench.leaderboard.recommend import MIN_SEEDS as MIN_SEEDS_REC
from medft_bench.leaderboard.stats import ALPHA, MIN_DATASETS, same
from medft_bench.text import printable

DASH = "—"
MAJORITY_MARK = "†"


@dataclass
class Cell:
    text: str
    style: str | None = None  # best | pos | neg | warn | muted

    def __post_init__(self) -> None:
        # Made safe here, where every cell is made: a record's fields and file names reach the terminal (plain and
        # rich), the pages and ``compare`` through cells, never raw.
        self.text = printable(self.text)

    def __str__(self) -> str:
        return self.text


FREE_TEXT = 40  # a column whose longest text is longer wraps (reasons, paths, claims); names and numbers do not


@dataclass(frozen=True)
class Column:
    """One column's settings, kept together: its header, alignment, whether it names the row (a key column is
    repeated in every part when a table too wide for the terminal is split), and where free text wraps."""

    header: str
    align: str = "l"  # "l" or "r"
    key: bool = False
    wrap: int | None = None  # wrap text at this many characters; None: FREE_TEXT when longer than that

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", printable(self.header))
        if self.align not in ("l", "r"):
            raise ValueError(f"column {self.header!r}: align must be 'l' or 'r', not {self.align!r}")


def left(header: str, *, key: bool = False, wrap: int | None = None) -> Column:
    return Column(header, "l", key, wrap)


def right(header: str) -> Column:
    return Column(header, "r")


@dataclass
class Table:
    key: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.title, self.caption = printable(self.title), printable(self.caption)
        self.notes = [printable(n) for n in self.notes]
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.key!r}: a row has {len(row)} cells for {len(self.columns)} columns")

    @property
    def headers(self) -> list[str]:
        return [col.header for col in self.columns]


def cell(value: Any, style: str | None = None) -> Cell:
    """A table cell showing ``value`` (None: empty) in ``style``."""
    return Cell("" if value is None else str(value), style)


def pct(v: float | None) -> str:
    return DASH if v is None else f"{v * 100:.2f}"


def pp(d: float | None) -> str:
    return DASH if d is None else f"{d * 100:+.2f}"


def seconds(v: float | None) -> str:
    return DASH if v is None else f"{v:.1f}"


def count(n: int | None) -> str:
    if n is None:
        return DASH
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}k"
    return str(n)


def memory(row: Row) -> str:
    mb, kind = row.costs["peak_mem_mb"], row.costs["peak_mem_kind"]
    return DASH if mb is None else f"{mb:.0f} {'GPU' if kind == 'gpu' else 'host'}"


def delta_style(d: float) -> str | None:
    return None if same(d, 0.0) else ("pos" if d > 0 else "neg")


def metric_desc(group: Group, splits: bool = True) -> str:
    """Which metric the group's numbers are, e.g. 'test AUC (chestmnist); test balanced accuracy (others)', and
    (``splits``) how many images each dataset's splits hold: a difference on 16 test images is not one on 600."""
    used = group.metrics_used
    if len(used) == 1:
        text = f"test {METRIC_NAMES[next(iter(used))]}, %"
    else:
        text = "; ".join(f"test {METRIC_NAMES[m]}, % ({', '.join(ds)})" for m, ds in used.items())
    return f"{text}; {split_sizes(group)}" if splits and split_sizes(group) else text


def split_sizes(group: Group) -> str:
    """'images train/val/test: pneumoniamnist 4708/524/624' over the group's records (every distinct size)."""
    sizes: dict[str, set[str]] = {}
    for run in group.runs:
        sp = run.record.get("data", {}).get("splits") or {}
        if all(isinstance(sp.get(k), int) for k in ("train", "val", "test")):
            sizes.setdefault(run.dataset, set()).add(f"{sp['train']}/{sp['val']}/{sp['test']}")
    if not sizes:
        return ""
    return "images train/val/test: " + ", ".join(f"{d} {' or '.join(sorted(v))}" for d, v in sorted(sizes.items()))


def title(group: Group, what: str) -> str:
    return f"{what} — {group.key.label}"


def results_table(group: Group) -> Table:
    strategies = group.strategies
    rows = []
    by_key = {(r.dataset, r.backbone, r.strategy): r for r in group.rows}
    for case in _all_cases(group):
        dataset, backbone = case
        present = [by_key.get((dataset, backbone, s)) for s in strategies]
        means = [r.mean for r in present if r is not None and r.mean is not None]
        best = max(means) if means else None
        metric = next(r.metric for r in present if r is not None)
        cells = [cell(dataset), cell(backbone), cell(METRIC_NAMES[metric])]
        for r in present:
            if r is None:
                cells.append(cell(""))
            elif r.mean is None:
                cells.append(cell(_no_mean_reason(r), "warn"))
            else:
                sd = DASH if r.summary.std is None else f"{r.summary.std * 100:.2f}"
                text = f"{pct(r.mean)} ± {sd} ({r.summary.n})" + (f" {MAJORITY_MARK}" if r.majority else "")
                cells.append(cell(text, "best" if best is not None and same(r.mean, best) else None))
        rows.append(cells)
    notes = [f"Mean ± sample std (ddof=1; {DASH} for one seed) over seeds, (n) = seeds; best in row highlighted.",
             f"{MAJORITY_MARK} at least one seed is no better than the majority-class baseline (see flags)."]
    return Table("results", title(group, "Results by case"),
                 [*CASE_KEYS, *(right(group.label(s)) for s in strategies)], rows, caption=metric_desc(group),
                 notes=notes)


CASE_KEYS = (left("dataset", key=True), left("backbone", key=True), left("metric", key=True))


def _no_mean_reason(r: Row) -> str:
    parts = []
    if r.diverged:
        parts.append(f"diverged {len(r.diverged)}")
    if r.failed:
        parts.append(f"failed {len(r.failed)}")
    if r.no_metric:
        parts.append(f"no {r.metric} {len(r.no_metric)}")
    return ", ".join(parts) or "no result"


def _all_cases(group: Group) -> list[tuple[str, str]]:
    return sorted({(r.dataset, r.backbone) for r in group.rows})


def delta_table(group: Group) -> Table | None:
    base = group.baseline
    if base is None:
        return None
    others = [s for s in group.strategies if s != base]
    if not others:
        return None
    cases = {cs.key: cs for cs in group.cases}
    rows = []
    for key in _all_cases(group):
        cs = cases.get(key)
        metric = next(r.metric for r in group.rows if (r.dataset, r.backbone) == key)
        cells = [cell(key[0]), cell(key[1]), cell(METRIC_NAMES[metric])]
        for s in others:
            if cs is None or not cs.deltas or s not in cs.deltas:
                cells.append(cell("" if cs is None or s not in cs.rows else "no FT", "muted"))
            else:
                d = cs.deltas[s]
                cells.append(cell(pp(d), delta_style(d)))
        rows.append(cells)
    return Table("delta", title(group, "Δ against FT by case (percentage points)"),
                 [*CASE_KEYS, *(right(group.label(s)) for s in others)], rows, caption=metric_desc(group),
                 notes=["Δ = strategy mean − FT mean over seeds, in percentage points of the case's metric."])


def rank_table(group: Group) -> Table:
    strategies = group.strategies
    rows = []
    for cs in group.cases:
        cells = [cell(cs.dataset), cell(cs.backbone)]
        best = min(cs.ranks.values()) if cs.ranks else None
        for s in strategies:
            r = cs.ranks.get(s)
            cells.append(cell("" if r is None else f"{r:g}", "best" if r is not None and r == best else None))
        rows.append(cells)
    avg = [cell("average rank", "muted"), cell("")]
    best_avg = min((v[0] for v in group.avg_ranks.values()), default=None)
    for s in strategies:
        v = group.avg_ranks.get(s)
        avg.append(cell(DASH if v is None else f"{v[0]:.2f} ({v[1]})",
                     "best" if v is not None and same(v[0], best_avg) else None))
    rows.append(avg)
    return Table("ranks", title(group, "Ranks within each case (1 = best)"),
                 [*CASE_KEYS[:2], *(right(group.label(s)) for s in strategies)], rows, caption=metric_desc(group),
                 notes=["Higher metric = rank 1; ties share the average of their ranks; strategies without a "
                        "mean in a case are not ranked there. Last row: average rank over cases (number of "
                        "cases), as in Lee et al. (ICLR 2023)."])


def strategy_table(group: Group) -> Table:
    base = group.baseline
    order = sorted(group.strategies, key=lambda s: (group.avg_ranks.get(s, (float("inf"), 0))[0],
                                                     group.strategies.index(s)))
    common = group.common_strategies
    rows = []
    for s in order:
        ar = group.avg_ranks.get(s)
        rc = group.avg_ranks_common.get(s)
        cells = [cell(group.label(s)), cell(DASH if ar is None else f"{ar[0]:.2f}"), cell(0 if ar is None else ar[1]),
                 cell(DASH if rc is None else f"{rc:.2f}")]
        if base is None or s == base:
            cells += [*(cell(DASH) for _ in range(7)), cell("baseline" if s == base else "no FT")]
        else:
            deltas = [cs.deltas[s] for cs in group.cases if s in cs.deltas]
            wins = sum(1 for d in deltas if d > 0 and not same(d, 0))
            ties = sum(1 for d in deltas if same(d, 0))
            t = group.tests.get(s, {})
            ok = t.get("ok_only", {})
            p = t.get("p")
            ci = t.get("ci")
            mean_d = t.get("mean")
            within = [w for w in t.get("within_case", []) if w["p"] is not None and w["p"] < ALPHA]
            up = sum(1 for w in within if w["delta"] > 0)
            cells += [cell(f"{wins}/{ties}/{len(deltas) - wins - ties}"),
                      cell(t.get("n", 0)),
                      cell(DASH if mean_d is None else pp(mean_d) + ("" if ci is None else
                                                                    f" [{pp(ci[0])}, {pp(ci[1])}]"),
                           delta_style(mean_d) if mean_d is not None else None),
                      cell(DASH if p is None else f"{p:.4f}"),
                      cell(DASH if t.get("p_holm") is None else f"{t['p_holm']:.4f}",
                           "pos" if t.get("p_holm") is not None and t["p_holm"] < ALPHA else None),
                      cell(DASH if ok.get("p_holm") is None else f"{ok['p_holm']:.4f}"),
                      cell(f"{up}+ / {len(within) - up}− of {len(t.get('within_case', []))}"),
                      cell(t.get("note") or f"t = {t['t']:.2f}, {t['n']} datasets", "muted" if t.get("note") else None)]
        rows.append(cells)
    common_note = (f"avg rank (common): ranks within each case among the {len(common)} strategies present in every "
                   "case, averaged over all cases (one competitor set); avg rank: over each strategy's own cases."
                   if common else "avg rank (common): no strategy is present in every case.")
    return Table("strategies", title(group, "Strategies against FT"),
                 [left("strategy", key=True), right("avg rank"), right("cases"), right("avg rank (common)"),
                  right("wins/ties/losses (cases)"), right("datasets n"),
                  right("mean Δ vs FT over datasets (pp) [95% CI]"),
                  right("t-test p"), right("p (Holm)"), right("p (Holm), failures dropped"),
                  right(f"within-case seeds p < {ALPHA}"), left("test")],
                 rows, caption=metric_desc(group),
                 notes=["Test against FT at the independent unit, the DATASET (a dataset's backbones share its "
                        "effect, so cases are not independent): per dataset the mean over its backbones of the case "
                        "Δ (means over seeds, a failed or diverged seed counted as the majority-class score), then a "
                        f"two-sided one-sample t-test over datasets (n = datasets, every one tested, zero differences "
                        f"included; fewer than {MIN_DATASETS} datasets: not testable). p (Holm) adjusts for the "
                        "strategies tested here; 'failures dropped': the same test on ok seeds only.",
                        "within-case seeds: cases where Welch's t over seeds (seeds as replicates of ONE case) gives "
                        f"p < {ALPHA}, above (+) or below (−) FT: evidence about those cases, not across datasets.",
                        common_note])


def details_table(group: Group, all_metrics: bool = False) -> Table:
    others = list(METRICS) if all_metrics else []
    columns = [left("dataset", key=True), left("backbone", key=True), left("strategy", key=True), right("n"),
               left("seeds"), right("mean"), right("std"), right("95% CI"), *(right(METRIC_NAMES[m]) for m in others),
               right("train s"), right("wall s"), right("peak MB"), right("trainable"), right("drift %"),
               right("div/fail"), left("flags")]
    rows = []
    for r in group.rows:
        s = r.summary
        ci = DASH if s.ci is None else f"[{pct(s.ci[0])}, {pct(s.ci[1])}]"
        flags = []
        if r.majority:
            flags.append(f"{MAJORITY_MARK} majority {len(r.majority)}/{len(r.ok)}")
        if r.no_metric:
            flags.append(f"no {r.metric} {len(r.no_metric)}")
        if r.costs.get("kept_start"):
            flags.append(f"kept stage start {r.costs['kept_start']}/{len(r.ok)}")
        if r.costs.get("head_only"):
            flags.append(f"head-only epochs in {r.costs['head_only']}/{len(r.ok)}")
        if unconverged_probes(r):
            flags.append(f"{UNCONVERGED_MARK} probe not converged {unconverged_probes(r)}/{len(r.ok)}")
        if r.costs.get("chosen_lr"):
            flags.append("lr " + ", ".join(f"{lr:g}" for lr in r.costs["chosen_lr"]))
        cells = [cell(r.dataset), cell(r.backbone), cell(group.label(r.strategy)), cell(s.n),
                 cell(",".join(map(str, r.seeds)) or DASH), cell(pct(s.mean)),
                 cell(DASH if s.std is None else f"{s.std * 100:.2f}"), cell(ci)]
        for m in others:
            o = r.others[m]
            cells.append(cell(DASH if o.mean is None else f"{pct(o.mean)} ± "
                           f"{DASH if o.std is None else f'{o.std * 100:.2f}'}"))
        cells += [cell(seconds(r.costs["train_s"])), cell(seconds(r.costs["wall_s"])), cell(memory(r)),
                  cell(count(r.costs["trainable_params"])),
                  cell(DASH if r.costs.get("drift") is None else f"{r.costs['drift'] * 100:.2f}"),
                  cell(f"{len(r.diverged)}/{len(r.failed)}", "warn" if r.diverged or r.failed else None),
                  cell("; ".join(flags), "warn" if flags else None)]
        rows.append(cells)
    metric_note = metric_desc(group)
    tuned_note = (["Tuned protocol: train s is the whole learning-rate sweep (every trial), the cost of using the "
                   "strategy this way; lr: the learning rate chosen on validation (per seed)."]
                  if group.key.protocol == "tuned" else [])
    if others:
        metric_note += "; metric columns: test " + ", ".join(METRIC_NAMES[m] for m in others) + " (%, mean ± std)"
    return Table("details", title(group, "Details: accuracy next to cost"), columns, rows, caption=metric_note,
                 notes=["mean, std and CI in % of the metric; 95% CI = mean ± t(0.975, n−1)·s/√n, only for n >= 3.",
                        "train s / wall s: mean training and wall-clock seconds per seed; peak MB: largest over "
                        "seeds, GPU = peak allocated on the GPU, host = peak resident memory of the process (CPU "
                        "runs); trainable: trainable parameters; drift %: 100·‖θ−θ₀‖/‖θ₀‖ of the backbone (every "
                        "parameter before the head) at the end, mean over seeds; div/fail: diverged/failed seeds "
                        "(listed below, excluded from means); kept stage start: the stage's best checkpoint was "
                        "the state it started from (LP-FT: no fine-tuning epoch beat the probe).", *tuned_note])


def _method_note(text: str) -> str:
    """'1: ...' -> 'Claim 1: ...'; a note about several claims names them itself."""
    return f"Claim {text}" if text[:1].isdigit() else text


def _claim_style(verdict: str) -> str:
    if verdict.startswith("consistent"):
        return "pos"
    return "neg" if verdict.startswith("not consistent") else "warn"


def claims_table(group: Group) -> Table:
    rows = [[cell(cl.statement), cell(cl.study), cell(cl.ours), cell(cl.verdict, _claim_style(cl.verdict)),
             cell(cl.verdict_without_failures, _claim_style(cl.verdict_without_failures))]
            for cl in group.claims]
    return Table("claims", title(group, "The study's claims, recomputed"),
                 [left("claim", key=True, wrap=48), left("study", wrap=32), left("ours", wrap=56),
                  left("verdict (failures counted)", wrap=56), left("verdict without failures", wrap=48)], rows,
                 caption=metric_desc(group),
                 notes=["Study: " + SOURCE + "; comparisons of means over seeds within this group only.",
                        *(_method_note(m) for m in METHOD)])


def claims_overview(groups: list[Group]) -> Table:
    """One row per group: ours for each claim, next to the study's figure (in the headers)."""
    rows = []
    for g in groups:
        cells = [cell(g.key.label)]
        for cl in g.claims:
            text = cl.verdict if cl.verdict.startswith(NOT_ENOUGH) else f"{cl.short}: {cl.verdict}"
            cells.append(cell(text, _claim_style(cl.verdict)))
        rows.append(cells)
    return Table("claims-overview", "The study's claims, recomputed per group",
                 [left("group", key=True, wrap=48), left("LP-FT beats FT (study: > 50% of cases)", wrap=48),
                  left("Auto-RGN gain over FT by modality (study: up to 11%)", wrap=48),
                  left("alternatives' gain by backbone (study: DenseNet-121 gains most)", wrap=48)],
                 rows, caption="metric: each group's (see its page)", notes=[_method_note(m) for m in METHOD])


def survival_table(study: Group, tuned: Group) -> Table | None:
    """Does a strategy's advantage over FT survive tuning? Its mean Δ against FT under each protocol, on the
    cases both protocols share; a change of sign is highlighted."""
    rows = []
    for sv in survival(study, tuned):
        verdict = ("sign flip" if sv.flip else "same sign" if not (same(sv.study, 0) or same(sv.tuned, 0))
                   else "a zero Δ")
        rows.append([cell(tuned.label(sv.strategy)), cell(pp(sv.study), delta_style(sv.study)),
                     cell(pp(sv.tuned), delta_style(sv.tuned)), cell(pp(sv.tuned - sv.study)), cell(len(sv.cases)),
                     cell(verdict, "warn" if sv.flip else None)])
    if not rows:
        return None
    return Table("survival", f"Does it survive tuning? — {study.key.setting_label}",
                 [left("strategy", key=True), right("mean Δ vs FT, study (pp)"), right("mean Δ vs FT, tuned (pp)"),
                  right("change (pp)"), right("cases"), left("verdict")], rows, caption=metric_desc(study),
                 notes=["Δ = strategy mean − FT mean over seeds, per (dataset, backbone) case, within each protocol "
                        "(FT tuned too under the tuned one), averaged over the cases that have the strategy and FT "
                        "under both protocols; cases: how many.",
                        "sign flip: the strategy's advantage over FT (or its deficit) reverses once every strategy "
                        "runs at its own best learning rate on validation."])


def survival_tables(groups: list[Group]) -> list[Table]:
    """One survival table per setting that has results under both protocols."""
    return [t for t in (survival_table(a, b) for a, b in protocol_pairs(groups)) if t is not None]


def incidents_table(group: Group) -> Table | None:
    rows = []
    for r in group.rows:
        for run in [*r.diverged, *r.failed]:
            epoch = run.record.get("diverged_epoch")
            rows.append([cell(run.cell_id), cell(run.status, "warn"), cell(DASH if epoch is None else epoch),
                         cell(_short(run.error or "")), cell(run.path, "muted")])
        for run in r.no_metric:
            rows.append([cell(run.cell_id), cell("ok", "muted"), cell(DASH), cell(f"test {r.metric} missing (null)"),
                         cell(run.path, "muted")])
        for run, why in r.majority:
            rows.append([cell(run.cell_id), cell("ok", "muted"), cell(DASH), cell(f"{MAJORITY_MARK} {why}"),
                         cell(run.path, "muted")])
    if not rows:
        return None
    return Table("incidents", title(group, "Diverged, failed and flagged cells"),
                 [left("cell", key=True), left("status"), right("diverged at epoch"), left("reason"),
                  left("record")], rows,
                 caption="Diverged and failed cells are excluded from means and ranks; flagged cells are kept.",
                 notes=["Majority-class flag: single-label: test ACC <= the majority class's ACC, or balanced "
                        "accuracy <= 1/classes; multi-label: test AUC <= 0.5 (balanced accuracy <= 0.5 when "
                        "AUC is missing), since ACC is ~0.95 for an all-negative ChestMNIST predictor."])


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


FROZEN_GAP = 0.05  # LP this far below kNN on the same features: the probe is suspect, not the features


def frozen_reference_table(group: Group) -> Table | None:
    """Each case against its frozen-feature references, as a reviewer reads a result: the kNN probe and the
    converged linear probe see the same features; a probe far below kNN has not converged, LP-FT below LP lost
    what it started from, and a strategy that trains at least the head below LP did worse than not moving the
    backbone at all."""
    rows = []
    for case in group.cases:
        knn = next((r for s, r in case.rows.items() if canonical_name(s) == "knn"), None)
        lp = next((r for s, r in case.rows.items() if canonical_name(s) == "lp"), None)
        lpft = next((r for s, r in case.rows.items() if canonical_name(s) == "lp_ft"), None)
        if lp is None and knn is None:
            continue
        gap = lp.mean - knn.mean if lp is not None and knn is not None else None
        below = sorted((s for s, r in case.rows.items() if lp is not None and canonical_name(s) not in ("lp", "knn")
                        and r.mean < lp.mean and not same(r.mean, lp.mean)), key=strategy_sort_key)
        lpft_gap = lpft.mean - lp.mean if lpft is not None and lp is not None else None
        cosine = _feature_cosine([r for r in (lp, knn) if r is not None])
        unconverged = unconverged_probes(lp) if lp is not None else 0
        lp_text = pct(lp.mean if lp else None) + (f" {UNCONVERGED_MARK} {unconverged}/{len(lp.ok)}"
                                                  if lp is not None and unconverged else "")
        rows.append([cell(case.dataset), cell(case.backbone),
                     cell(DASH if cosine is None else f"{cosine:.2f}", "warn" if (cosine or 0) >= COLLINEAR else None),
                     cell(pct(knn.mean if knn else None)), cell(lp_text, "warn" if unconverged else None),
                     cell(pp(gap), "warn" if gap is not None and gap < -FROZEN_GAP else None),
                     cell(pp(lpft_gap), "warn" if lpft_gap is not None and lpft_gap < 0 and not same(lpft_gap, 0.0)
                       else None),
                     cell(", ".join(map(group.label, below)) or DASH)])
    if not rows:
        return None
    return Table("frozen", title(group, "Against the frozen-feature references"),
                 [*CASE_KEYS[:2], right("cos"), right("kNN"), right("LP"), right("LP − kNN"), right("LP-FT − LP"),
                  left("below LP")], rows, caption=metric_desc(group),
                 notes=[f"kNN and LP read the same frozen features. LP − kNN below −{FROZEN_GAP * 100:.0f} pp: the "
                        "probe, not the features, is suspect. LP-FT − LP below 0: fine-tuning lost what the probe "
                        "had. below LP: strategies that moved more than the head and ended worse than the probe.",
                        f"cos: mean cosine between two training images' frozen features (records' "
                        f"head.feature_cosine). At {COLLINEAR:.1f} or above, every image points the same "
                        "way and the classes live in a small difference that a step moving every image alike erases: "
                        "training the backbone, or a head by Adam, is then fragile (docs/strategies.md, 'Reading the "
                        "smoke tier').",
                        f"{UNCONVERGED_MARK} k/n: in k of the n ok seeds the probe's solve says it did not converge "
                        "(the record's solve entry in epochs, converged: false): LP, and LP − kNN, are then a lower "
                        "bound of what the frozen features allow, not the converged probe."])


UNCONVERGED_MARK = "‡"


def unconverged_probes(row: Row) -> int:
    """How many of ``row``'s ok seeds have a linear-probe solve that says it did not converge."""
    return sum(1 for r in row.ok if r.probe_converged is False)


def _feature_cosine(rows: list[Any]) -> float | None:
    """The mean ``head.feature_cosine`` of the first of ``rows`` (LP's, else kNN's) whose ok runs record it."""
    for row in rows:
        values = [v for v in ((r.record.get("head") or {}).get("feature_cosine") for r in row.ok)
                  if isinstance(v, (int, float))]
        if values:
            return sum(values) / len(values)
    return None


def group_tables(group: Group, all_metrics: bool = False) -> list[Table]:
    from medft_bench.leaderboard.literature import literature_table, provenance_table  # built on this module

    tables = [results_table(group), literature_table(group), provenance_table(group), delta_table(group),
              rank_table(group), strategy_table(group),
              frozen_reference_table(group), details_table(group, all_metrics), claims_table(group),
              incidents_table(group)]
    return [t for t in tables if t is not None]


def problems_table(inputs: Inputs) -> Table | None:
    rows = [[cell(p.path), cell(p.reason, "warn")] for p in inputs.problems]
    if not rows:
        return None
    return Table("problems", "Files skipped (not valid records)", [left("file", key=True), left("reason")], rows,
                 caption=f"{len(rows)} problem{'s' if len(rows) != 1 else ''}; none of these enter any table.")


def notes_table(inputs: Inputs) -> Table | None:
    rows = [[cell(n.kind), cell(n.cell_id), cell(n.dropped), cell(n.kept)] for n in inputs.notes]
    if not rows:
        return None
    return Table("duplicates", "Records counted once",
                 [left("kind", key=True), left("cell", key=True), left("not counted"), left("counted")], rows,
                 caption="duplicate: same config_hash (ok before diverged before failed, then the latest); "
                         "superseded: same cell and group, another configuration (the latest finished counts).")


def reference_tables(datasets: set[str] | None = None) -> list[Table]:
    out = []
    for src in references.sources(datasets):
        cols = src["columns"]
        rows = [[cell(references.format_value(r.get(k), src["decimals"])) for k, _ in cols] for r in src["rows"]]
        names = ("dataset", "model", "backbone", "scheme", "strategy")
        columns = [left(h, key=k in names) if k in names else right(h) for k, h in cols]
        out.append(Table(f"ref-{src['id']}", f"{src['paper']} — {src['table']}", columns, rows,
                         caption=f"Protocol: {src['protocol']}"))
    return out


def recommendation_table(group: Group) -> Table | None:
    """Which strategy for each modality and backbone of the group, at what cost (see :mod:`recommend`): per
    case three lines, the best (selected on validation), the runner-up with the test of their difference, and the
    cheapest strategy non-inferior to the best, each with its test score and its cost (training time, peak memory,
    trainable parameters). Narrow on purpose, the case stacked in its column (modality, backbone, then one dataset a
    line), so that the answer fits a 100-column terminal."""
    rows = []
    recs = recommend(group)
    kinds: set[str] = set()
    notes_images: set[str] = set()
    for rec in recs:
        lines: list[tuple[str, Candidate | None, Cell]] = [("best", rec.best, cell(""))]
        if rec.runner_up is not None:
            diff = rec.runner_up.summary.mean - rec.best.summary.mean
            verdict = "no test" if rec.p is None else f"p={rec.p:.2g}" + ("*" if rec.significant else "")
            lines.append(("runner-up", rec.runner_up, cell(f"{pp(diff)} {verdict}",
                                                           "neg" if rec.significant else "muted")))
        if rec.cheapest is None:
            lines.append(("cheapest", None, cell("not testable", "muted")))
        elif rec.cheapest is rec.best:
            lines.append(("cheapest", rec.best, cell("= best", "muted")))
        else:
            lines.append(("cheapest", rec.cheapest,
                          cell(pp(rec.cheapest.summary.mean - rec.best.summary.mean), "muted")))
        case = [rec.modality, rec.backbone, *rec.datasets]
        notes_images.add(rec.images.note if rec.images and rec.images.note else "")
        # Each line: (role, candidate, its test % cell, its vs-best cell); under it, the test set's interval for
        # the number it qualifies (the best's score, the others' difference), so that no column is added.
        shown: list[tuple[str, Candidate | None, Cell, Cell]] = []
        for (role, cand, versus), ci in zip(lines, _image_cells(rec, [role for role, _, _ in lines])):
            shown.append((role, cand, cell(_score(cand)), versus))
            if ci is not None:
                shown.append(("", None, ci, cell("")) if role == "best" else ("", None, cell(""), ci))
        shown += [("", None, cell(""), cell(""))] * (len(case) - len(shown))
        for i, (role, cand, score, versus) in enumerate(shown):
            cost, kind = _candidate_cost(cand)
            kinds |= {kind} if kind else set()
            rows.append([cell(case[i] if i < len(case) else ""), cell(role),
                         cell(group.label(cand.strategy) if cand else ("" if not role else DASH)), score,
                         versus, cell(cost)])
    if not rows:
        return None
    selected = sorted({rec.selected_on for rec in recs})
    memory = " and ".join(sorted({"gpu": "GPU allocated", "host": "host resident (CPU runs)"}[k] for k in kinds))
    return Table("recommendations", title(group, "Which strategy for my modality and backbone?"),
                 # answer and strategy repeat with the case: a part with the cost alone still says whose it is
                 [left("case", key=True), left("answer", key=True), left("strategy", key=True), right("test %"),
                  left("vs best"), right("cost")], rows, caption=metric_desc(group),
                 notes=["case: modality, backbone, datasets. Per modality and backbone, the strategies with a "
                        "result on every dataset of the modality compete; score per seed = mean over those datasets; "
                        "test %: the TEST score, mean ± half the 95% t interval over seeds (no ± below 3 seeds).",
                        "best and runner-up: ranked by the VALIDATION score (selected on: " + ", ".join(selected)
                        + "), so that the test comparisons do not test the numbers that chose the winner.",
                        "vs best: the test difference from the best in pp; for the runner-up with the two-sided "
                        f"paired t-test over seeds (>= {MIN_SEEDS_REC} seeds; * p < {ALPHA}). The unit is the seed: "
                        "these datasets, not other datasets of the modality; the test set's sampling error is the "
                        "[lo, hi] below.",
                        f"[lo, hi] under a number: its 95% interval over the TEST IMAGES, the test set's sampling "
                        f"error with the trained models held fixed (percentile bootstrap, {bootstrap.B} draws shared "
                        "by every strategy and seed): under the best's test %, its score; under a vs-best difference, "
                        "that difference (paired image by image). Where it and the seed test disagree, neither "
                        "settles the ranking."
                        + "".join(f" No interval: {n}." for n in sorted(notes_images - {""})),
                        f"cheapest: the least training time per seed among the strategies non-inferior to the best "
                        f"by {MARGIN * 100:g} pp (one-sided 95% lower bound of the paired difference over seeds above "
                        f"−{MARGIN * 100:g} pp; the best itself qualifies; not testable below {MIN_SEEDS_REC} seeds).",
                        "cost: train s · peak memory · trainable parameters. train s: mean training seconds per seed "
                        "(tuned protocol: the whole learning-rate sweep); peak memory: the largest over the case's "
                        f"cells ({memory or 'none recorded'})."])


def _image_cells(rec: Recommendation, roles: list[str]) -> list[Cell | None]:
    """The bootstrap-over-images interval for each line of a recommendation (by role: best, runner-up, cheapest),
    None where there is none (no predictions, the cheapest being the best)."""
    ci = rec.images
    out: list[Cell | None] = []
    for role in roles:
        diff = None if ci is None or ci.note else ci.best if role == "best" else (
            ci.runner_up if role == "runner-up" else ci.cheapest)
        if diff is None:
            out.append(None)
        elif role == "best":
            out.append(cell(f"[{diff[0] * 100:.1f}, {diff[1] * 100:.1f}]", "muted"))
        else:
            lo, hi = diff
            out.append(cell(f"[{lo * 100:+.1f}, {hi * 100:+.1f}]", "muted" if lo <= 0 <= hi else "neg"))
    return out


def _score(cand: Candidate | None) -> str:
    if cand is None:
        return ""
    s = cand.summary
    return pct(s.mean) + (f" ± {s.ci_half * 100:.2f}" if s.ci_half is not None else "")


def _candidate_cost(cand: Candidate | None) -> tuple[str, str | None]:
    """"train s · peak memory · trainable parameters" of a candidate, and the memory's kind."""
    if cand is None:
        return "", None
    value = cand.peak_mem_mb
    mem = DASH if value is None else f"{value / 1024:.2f}GB" if value >= 1024 else f"{value:.0f}MB"
    train = DASH if cand.train_s is None else f"{cand.train_s:.1f}s"
    return f"{train}·{mem}·{count(cand.trainable_params)}", cand.peak_mem_kind


def recommendation_tables(groups: list[Group]) -> list[Table]:
    return [t for t in map(recommendation_table, groups) if t is not None]
