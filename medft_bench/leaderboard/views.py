"""The practitioner's views of a group, per case (dataset, backbone), from what the records already hold:

- **learning curves**: every strategy's seeds, the validation metric after each epoch (the records' ``epochs``),
  one panel per strategy;
- **confusion matrices**: the test split at the argmax, summed over seeds, with each class's recall and
  precision, for the answer's pick and a few references (:data:`COMPARED`);
- **ROC curves** (binary tasks): each seed of the same strategies;
- ``per-class.csv``: every ok record's per-class support, precision, recall and F1 on test.

Three PNGs a case at most (a grid per figure, never one a record), so the count of files stays bounded. The
predictions are read through :func:`bootstrap.load_split`, which checks them against the record and reads each
file once per leaderboard. Scores and curves are :mod:`sklearn.metrics`'.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medft_bench.leaderboard.bootstrap import Predicted, load_split, predicted_labels
from medft_bench.leaderboard.plots import STYLE, _figure, _save, _wrap
from medft_bench.vocabulary import METRIC_NAMES, MULTI_LABEL

if TYPE_CHECKING:
    from medft_bench.leaderboard.aggregate import Case, Group
    from medft_bench.leaderboard.load import Run

VIEW_KINDS = ("curves", "confusion", "roc")
PER_CLASS_CSV = "per-class.csv"
# Besides the pick on validation: the references a practitioner compares with (in this order, when present)
REFERENCES = ("ft", "lp", "knn")
COMPARED = 4  # strategies in a case's confusion and ROC figures
CURVE_COLUMNS = 4  # panels per row of the learning-curve grid
SEED_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
STRATEGY_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")


def view_key(kind: str, dataset: str, backbone: str) -> str:
    """The key of a case's view among its group's plots (``summary.json``'s ``plots``)."""
    return f"{kind}:{dataset}:{backbone}"


def file_name(prefix: str, kind: str, dataset: str, backbone: str) -> str:
    return f"{prefix}-{dataset}-{backbone}-{kind}.png"


def planned_files(group: Group, prefix: str) -> list[str]:
    """Every name :func:`write_views` may write for ``group`` (drawn or not)."""
    return [file_name(prefix, k, cs.dataset, cs.backbone) for cs in group.cases for k in VIEW_KINDS]


def pick(group: Group, case: Case) -> str | None:
    """The answer's pick on validation for ``case`` (its modality and backbone's recommendation)."""
    return next((r.best.strategy for r in group.analysis.recommendations
                 if r.backbone == case.backbone and case.dataset in r.datasets), None)


def compared(group: Group, case: Case) -> list[str]:
    """The strategies a case's confusion and ROC figures show: the answer's pick for the case, then
    :data:`REFERENCES` present in the case, then the next best by test mean, :data:`COMPARED` at most."""
    by_mean = sorted(case.rows, key=lambda s: -(case.rows[s].mean or 0.0))
    order = [pick(group, case), *(s for s in REFERENCES if s in case.rows), *by_mean]
    return [s for s in dict.fromkeys(order) if s is not None and s in case.rows][:COMPARED]


def _tests(runs: list[Run]) -> list[tuple[Run, Predicted]]:
    return [(r, p) for r in runs if isinstance(p := load_split(r, "test"), Predicted)]


def _curve(run: Run, metric: str) -> list[float]:
    """The validation ``metric`` after each epoch, in the order the epochs ran (stages joined)."""
    return [float(e["val"][metric]) for e in run.epochs
            if isinstance(e.get("val"), dict) and isinstance(e["val"].get(metric), (int, float))]


def learning_curves(group: Group, case: Case, path: Path) -> bool:
    """A grid of panels, one per strategy: each seed's validation metric per epoch. False: no curve at all."""
    import matplotlib

    curves = {s: [(r.seed, _curve(r, row.metric)) for r in row.ok] for s, row in case.rows.items()}
    curves = {s: [(seed, c) for seed, c in cs if c] for s, cs in curves.items()}
    strategies = [s for s in case.rows if curves[s]]
    if not strategies:
        return False
    seeds = sorted({seed for s in strategies for seed, _ in curves[s]})
    colour = {seed: SEED_COLOURS[i % len(SEED_COLOURS)] for i, seed in enumerate(seeds)}
    values = [v for s in strategies for _, c in curves[s] for v in c]
    low = max(0.0, math.floor(min(values) * 20) / 20)  # a shared axis: panels compare at a glance
    cols = min(CURVE_COLUMNS, len(strategies))
    rows = math.ceil(len(strategies) / cols)
    metric = case.metric
    with matplotlib.rc_context({**STYLE, "font.size": 10, "axes.titlesize": 11}):
        title = _wrap(f"Learning curves — {case.dataset}, {case.backbone}: validation "
                      f"{METRIC_NAMES.get(metric, metric)} after each epoch, one line per seed\n{group.key.label}",
                      int(3.2 * cols * 12))
        height = 2.4 * rows + 0.85 + 0.2 * title.count("\n")
        fig = _figure(3.2 * cols, height)
        fig.suptitle(title, fontsize=11)
        for i, s in enumerate(strategies):
            ax = fig.add_subplot(rows, cols, i + 1)
            for seed, c in curves[s]:
                ax.plot(range(1, len(c) + 1), [v * 100 for v in c], marker="o", markersize=3, lw=1.2,
                        color=colour[seed], label=f"seed {seed}")
            ax.set_title(group.label(s))
            ax.set_ylim(low * 100, 100)
            ax.grid(alpha=0.3)
            longest = max(len(c) for _, c in curves[s])
            ax.set_xticks(range(1, longest + 1, max(1, math.ceil(longest / 8))))
            if i % cols == 0:
                ax.set_ylabel(f"val {METRIC_NAMES.get(metric, metric)} (%)")
            if i >= len(strategies) - cols:
                ax.set_xlabel("epoch (stages in the order they ran)")
        handles = {lab: h for ax in fig.axes for h, lab in zip(*ax.get_legend_handles_labels())}
        fig.legend([handles[f"seed {s}"] for s in seeds], [f"seed {s}" for s in seeds], loc="lower center",
                   ncol=len(seeds), frameon=False)
        fig.subplots_adjust(left=0.9 / (3.2 * cols), right=0.98, top=1 - (0.6 + 0.2 * title.count("\n")) / height,
                            bottom=0.85 / height, hspace=0.55, wspace=0.25)
        _save(fig, path)
    return True


def _confusion(task: str, preds: list[Predicted], n_classes: int) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return sum((confusion_matrix(p.labels.reshape(-1), predicted_labels(task, p.scores), labels=range(n_classes))
                for p in preds), np.zeros((n_classes, n_classes), dtype=np.int64))


def confusion_figure(group: Group, case: Case, strategies: list[str], path: Path) -> bool:
    """The test confusion matrix at the argmax of each of ``strategies``, summed over its seeds, rows normalised
    (each row's cells are the true class's share), with per-class recall and precision. Single-label tasks."""
    import matplotlib

    picked = pick(group, case)
    panels = []
    for s in strategies:
        tests = _tests(case.rows[s].ok)
        if tests and tests[0][0].task != MULTI_LABEL:
            n = max(r.n_classes or p.scores.shape[1] for r, p in tests)
            panels.append((s, tests[0][0].task, len(tests), _confusion(tests[0][0].task, [p for _, p in tests], n)))
    if not panels:
        return False
    n = max(m.shape[0] for *_, m in panels)
    cell = 0.55 if n <= 6 else 0.3
    side = max(3.4, cell * n + 1.2)  # room for a class's "recall 63.8%, precision 63.5%" line
    with matplotlib.rc_context({**STYLE, "font.size": 10, "axes.titlesize": 10}):
        width = max(side * len(panels) + 0.4, 6.4)
        title = _wrap(f"Test confusion matrices at the argmax — {case.dataset}, {case.backbone}, summed over seeds "
                      f"(rows: true class, % of the row)\n{group.key.label}", int(width * 12))
        fig = _figure(width, side + 1.3 + 0.2 * title.count("\n"))
        fig.suptitle(title, fontsize=11)
        for i, (s, _task, seeds, m) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            rows = m.sum(1, keepdims=True)
            share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
            ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
            if n <= 10:
                for (a, b), v in np.ndenumerate(m):
                    ax.text(b, a, f"{share[a, b] * 100:.0f}%\n({v})", ha="center", va="center", fontsize=8,
                            color="white" if share[a, b] > 0.6 else "black")
            cols = m.sum(0)
            recall = np.divide(np.diag(m), rows[:, 0], out=np.full(len(m), np.nan), where=rows[:, 0] > 0)
            precision = np.divide(np.diag(m), cols, out=np.full(len(m), np.nan), where=cols > 0)
            mark = " (pick)" if s == picked else ""
            ax.set_title(f"{group.label(s)}{mark}, {seeds} seed{'s' if seeds != 1 else ''}")
            ticks = range(len(m)) if n <= 12 else range(0, len(m), math.ceil(n / 12))
            ax.set_xticks(list(ticks))
            ax.set_yticks(list(ticks))
            ax.set_xlabel("predicted class")
            if i == 0:
                ax.set_ylabel("true class")
            lines = [f"class {c}: recall {_pct(recall[c])}, precision {_pct(precision[c])}" for c in range(min(n, 4))]
            if n > 4:
                lines.append(f"... {n - 4} more classes in {PER_CLASS_CSV}")
            ax.text(0.5, -0.25, "\n".join(lines), transform=ax.transAxes, ha="center", va="top", fontsize=9)
        fig.subplots_adjust(left=0.6 / fig.get_figwidth(), right=0.99,
                            top=1 - (0.3 + 0.2 * title.count("\n")) / fig.get_figheight(),
                            bottom=1.0 / fig.get_figheight(), wspace=0.35)
        _save(fig, path)
    return True


def _pct(v: float) -> str:
    return "—" if not np.isfinite(v) else f"{v * 100:.1f}%"


def roc_figure(group: Group, case: Case, strategies: list[str], path: Path) -> bool:
    """Test ROC curves of a binary case: each seed of each of ``strategies``, one colour a strategy."""
    import matplotlib
    from sklearn.metrics import roc_auc_score, roc_curve

    lines = []
    for s in strategies:
        tests = _tests(case.rows[s].ok)
        if tests and tests[0][0].task == "binary-class":
            lines.append((s, [(p.labels.reshape(-1), p.scores[:, -1]) for _, p in tests]))
    lines = [(s, seeds) for s, seeds in lines if all(len(set(y)) == 2 for y, _ in seeds)]
    if not lines:
        return False
    picked = pick(group, case)
    with matplotlib.rc_context({**STYLE, "font.size": 10, "axes.titlesize": 10}):
        fig = _figure(6.4, 5.6)
        ax = fig.add_subplot(1, 1, 1)
        for colour, (s, seeds) in zip(STRATEGY_COLOURS, lines):
            aucs = [roc_auc_score(y, score) for y, score in seeds]
            for j, (y, score) in enumerate(seeds):
                fpr, tpr, _ = roc_curve(y, score)
                ax.plot(fpr, tpr, color=colour, lw=1.3, alpha=0.75,
                        label=(f"{group.label(s)}{' (pick)' if s == picked else ''}: AUC {np.mean(aucs) * 100:.1f}% "
                               f"(mean of {len(seeds)} seed{'s' if len(seeds) != 1 else ''})") if j == 0 else None)
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate (1 − specificity)")
        ax.set_ylabel("true positive rate (sensitivity)")
        ax.set_title(_wrap(f"Test ROC — {case.dataset}, {case.backbone}, one line per seed\n{group.key.label}", 70),
                     fontsize=10)
        ax.legend(loc="lower right", fontsize=9)
        ax.grid(alpha=0.3)
        fig.subplots_adjust(left=0.12, right=0.97, top=0.86, bottom=0.1)
        _save(fig, path)
    return True


def write_views(group: Group, out: Path, prefix: str) -> dict[str, str]:
    """Write each case's views of ``group`` into ``out``; :func:`view_key` -> file name of those written."""
    written = {}
    for case in group.cases:
        shown = compared(group, case)
        for kind, draw in (("curves", lambda p, c=case: learning_curves(group, c, p)),
                           ("confusion", lambda p, c=case, s=shown: confusion_figure(group, c, s, p)),
                           ("roc", lambda p, c=case, s=shown: roc_figure(group, c, s, p))):
            name = file_name(prefix, kind, case.dataset, case.backbone)
            if draw(out / name):
                written[view_key(kind, case.dataset, case.backbone)] = name
    return written


PER_CLASS_COLUMNS = ("group", "tier", "protocol", "dataset", "backbone", "strategy", "seed", "split", "class",
                     "support", "precision", "recall", "f1", "cell_id", "path")


def per_class_csv(groups: list[Group]) -> str:
    """Every ok single-label record's per-class test metrics at the argmax (sklearn's), one row a class."""
    from sklearn.metrics import precision_recall_fscore_support

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PER_CLASS_COLUMNS)
    for g in groups:
        for row in g.rows:
            for run, p in _tests(row.ok):
                if run.task == MULTI_LABEL:
                    continue
                n = run.n_classes or p.scores.shape[1]
                prec, rec, f1, support = precision_recall_fscore_support(
                    p.labels.reshape(-1), predicted_labels(run.task, p.scores), labels=range(n), zero_division=0)
                for c in range(n):
                    w.writerow([g.key.slug, g.key.tier, g.key.protocol, run.dataset, run.backbone, run.strategy,
                                run.seed, "test", c, int(support[c]), f"{prec[c]:.6f}", f"{rec[c]:.6f}",
                                f"{f1[c]:.6f}", run.cell_id, run.path])
    return buf.getvalue()
