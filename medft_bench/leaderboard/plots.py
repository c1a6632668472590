"""PNG plots (matplotlib, Agg, no pyplot state): Δ-vs-FT heatmap and accuracy-against-cost Pareto view.

Byte-identical for the same input: fixed sizes, fonts and DPI, and no "Software" or time metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.stats import pareto_front
from medft_bench.leaderboard.tables.format import metric_desc
from medft_bench.vocabulary import METRIC_NAMES

PNG_METADATA = {"Software": None}
STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 9, "figure.dpi": 100,
         "savefig.dpi": 100, "path.simplify": False, "image.interpolation": "nearest"}


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> None:
    from medft_bench.io import atomic_path

    with atomic_path(path, durable=False) as tmp, open(tmp, "wb") as f:  # a page never shows half a PNG
        fig.savefig(f, format="png", dpi=100, metadata=PNG_METADATA)


def _wrap(text: str, width: int = 95) -> str:
    import textwrap

    return "\n".join(w for line in text.split("\n") for w in (textwrap.wrap(line, width) or [""]))


MAX_ROW_LABEL = 40  # characters of a strategy label the heatmap shows in full; longer ones end in "…"


def _row_label(text: str) -> str:
    return text if len(text) <= MAX_ROW_LABEL else text[: MAX_ROW_LABEL - 1] + "…"


def delta_heatmap(group: Group, path: Path) -> bool:
    """Strategies (rows) x cases (columns), Δ against FT in pp. False (nothing written) without FT."""
    import matplotlib
    import numpy as np

    base = group.baseline
    cases = [cs for cs in group.cases if cs.deltas]
    others = [s for s in group.strategies if s != base]
    if base is None or not cases or not others:
        return False
    data = np.full((len(others), len(cases)), np.nan)
    for j, cs in enumerate(cases):
        for i, s in enumerate(others):
            if s in cs.deltas:
                data[i, j] = cs.deltas[s] * 100
    lim, clipped = colour_limit(data[np.isfinite(data)])
    with matplotlib.rc_context(STYLE):
        labels = [f"{cs.dataset}\n{cs.backbone}" for cs in cases]
        ylabels = [_row_label(group.label(s)) for s in others]
        left = 0.25 + 0.065 * max(map(len, ylabels))  # inches for the row labels
        # Wide enough for the row labels' margin, the right margin and the cells: a 62-character label left
        # no room at 5 inches ("left cannot be >= right") and stopped the whole leaderboard.
        width = max(5.0, 2.4 + 0.9 * len(cases), left + 0.8 + 0.9 * len(cases))
        title = _wrap(f"Δ against FT (pp) — {group.key.label}\n{metric_desc(group, splits=False)}", int(width * 14))
        tick_h = 0.45 + 0.045 * max(len(x) for lab in labels for x in lab.split("\n"))  # 30° rotated, inches
        height = 0.42 * len(others) + tick_h + 0.2 + 0.16 * (title.count("\n") + 1) + 0.3
        fig = _figure(width, height)
        ax = fig.add_subplot(1, 1, 1)
        # fixed margins instead of tight_layout (a second full layout pass, slow): inches -> fractions
        fig.subplots_adjust(left=left / width, right=1 - 0.8 / width,
                            bottom=tick_h / height, top=1 - (0.16 * (title.count("\n") + 1) + 0.2) / height)
        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
        im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
        for i in range(len(others)):
            for j in range(len(cases)):
                if np.isfinite(data[i, j]):
                    # white on the colour map's dark ends (|Δ| past 70 % of the limit), black elsewhere
                    dark = abs(data[i, j]) > 0.7 * lim
                    ax.text(j, i, f"{data[i, j]:+.1f}", ha="center", va="center", fontsize=8,
                            color="white" if dark else "black")
        ax.set_xticks(range(len(cases)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_yticks(range(len(others)), ylabels)
        fig.colorbar(im, ax=ax, label="Δ vs FT (pp)" + (f", colours end at ±{lim:.1f}" if clipped else ""),
                     fraction=0.05, pad=0.02, extend="both" if clipped else "neither")
        # (the colour bar takes its room from the axes, inside the right margin)
        fig.suptitle(title, fontsize=8, y=1 - 0.08 / height, va="top")
        _save(fig, path)
    return True


def colour_limit(deltas: Any) -> tuple[float, bool]:
    """The heatmap's symmetric colour limit (pp) and whether it clips: the 90th percentile of |Δ| (of ten
    cells or more; the largest below that), so that one outlier (a strategy at the majority class, +45 pp)
    does not paint every real difference the same pale colour; clipped cells keep their number printed."""
    import numpy as np

    mags = np.abs(np.asarray(deltas, dtype=float))
    if not mags.size:
        return 0.5, False
    lim = max(float(np.percentile(mags, 90) if mags.size >= 10 else mags.max()), 0.5)  # a few cells: all shown
    return lim, bool(mags.max() > lim)


def pareto_points(group: Group) -> tuple[dict[str, tuple[float, float]], int, bool]:
    """strategy -> (mean training seconds, mean metric %) over the cases every strategy has (or, when no
    case has them all, over each strategy's own cases); also the number of cases and whether they are
    common to all strategies."""
    measured = [s for s in group.strategies if any(s in cs.rows for cs in group.cases)]
    common = [cs for cs in group.cases if all(s in cs.rows for s in measured)]
    use_common = bool(common)
    points = {}
    for s in measured:
        cases = common if use_common else [cs for cs in group.cases if s in cs.rows]
        costs = [cs.rows[s].costs["train_s"] for cs in cases if cs.rows[s].costs["train_s"] is not None]
        scores = [cs.rows[s].mean for cs in cases]
        if costs and scores:
            points[s] = (sum(costs) / len(costs), sum(scores) / len(scores) * 100)
    return points, len(common) if use_common else len(group.cases), use_common


# Label positions tried around a point, in points (x, y), nearest first: right, left, then below, above and
# further out (with a leader line).
_OFFSETS = [(6, 4), (-6, 4), (6, -10), (-6, -10), (0, 9), (0, -14)] + [
    (dx * r, dy * r) for r in (2, 3, 4, 5) for dx, dy in ((6, 4), (-6, 4), (6, -8), (-6, -8), (0, 7), (0, -9))]


def _place_labels(fig: Any, ax: Any, points: dict[str, tuple[float, float]], labels: dict[str, str]) -> None:
    """Annotate each point with its label where it overlaps no other label, no marker and stays inside the
    axes: the first free position of _OFFSETS (a leader line when it is not next to the point)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    pixels = {s: ax.transData.transform(p) for s, p in points.items()}
    marker = 5.0  # half a marker's size in pixels
    taken = [(x - marker, y - marker, x + marker, y + marker) for x, y in pixels.values()]
    legend = ax.get_legend()
    if legend is not None:
        lb = legend.get_window_extent(renderer)
        taken.append((lb.x0, lb.y0, lb.x1, lb.y1))

    def free(b: Any) -> bool:
        inside = b.x0 >= box.x0 and b.x1 <= box.x1 and b.y0 >= box.y0 and b.y1 <= box.y1
        return inside and not any(b.x0 < t[2] and b.x1 > t[0] and b.y0 < t[3] and b.y1 > t[1] for t in taken)

    def text_box(ann: Any) -> Any:  # the text alone, not its leader line
        ann.update_positions(renderer)
        return Text.get_window_extent(ann, renderer)

    # left to right, then top to bottom: crowded clusters resolve the same way every time
    for s in sorted(points, key=lambda k: (points[k][0], -points[k][1], k)):
        ann = None
        for i, (dx, dy) in enumerate(_OFFSETS):
            far = i >= 2  # not beside the point: a leader line says which point it names
            if ann is not None:
                ann.remove()
            ann = ax.annotate(labels[s], points[s], textcoords="offset points", xytext=(dx, dy), fontsize=8,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy >= 0
                              else "top", zorder=4,
                              arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#555555", "shrinkA": 0,
                                          "shrinkB": 3} if far else None)
            b = text_box(ann)
            if free(b):
                break
        else:  # nowhere free: keep the first position rather than none
            ann.remove()
            ann = ax.annotate(labels[s], points[s], textcoords="offset points", xytext=_OFFSETS[0], fontsize=8,
                              zorder=4)
            b = text_box(ann)
        taken.append((b.x0, b.y0, b.x1, b.y1))


def pareto_plot(group: Group, path: Path) -> bool:
    """Mean metric against mean training time per strategy; the Pareto frontier highlighted. False (nothing
    written) without a point."""
    import matplotlib

    with matplotlib.rc_context(STYLE):
        fig = pareto_figure(group)
        if fig is None:
            return False
        _save(fig, path)
    return True


MAX_ANSWER_PANELS = 6  # answers drawn one panel each; a group with more gets the averaged Pareto view


def pareto_figure(group: Group) -> Any:
    """The cost view as a matplotlib figure (None without a point); call inside ``rc_context(STYLE)``. With up to
    MAX_ANSWER_PANELS answers, one panel per answer draws exactly what its table says (:func:`answer_figure`);
    otherwise the means over the cases with the Pareto frontier."""
    recs = group.analysis.recommendations
    if 0 < len(recs) <= MAX_ANSWER_PANELS:
        return answer_figure(group)
    return pareto_means_figure(group)


def _cost_axes(ax: Any, xs: list[float]) -> None:
    """Margins, a log cost axis when the costs span more than 20x, and the metric's axis ending at 100 %."""
    ax.margins(x=0.18, y=0.12)
    _log_x(ax, xs)
    ax.autoscale_view()
    low, high = ax.get_ylim()
    if high > 100:  # a metric in % ends at 100
        ax.set_ylim(low, 100.0)


def _log_x(ax: Any, xs: list[float]) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if min(xs) > 0 and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
        # labels on 1-2-5 ticks only: matplotlib's minor labels collide on spans of about a decade
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())


def answer_figure(group: Group) -> Any:
    """One panel per answer: each strategy's test score against its training time, with the answer table's 95%
    interval (seeds and test images) as a vertical bar; the best (selected on validation) a star, the rest of the
    not-separable set filled, the strategies shown below the best hollow grey."""
    recs = [r for r in group.analysis.recommendations if any(st.train_s is not None for st in r.standings)]
    if not recs:
        return None
    cols = 1 if len(recs) == 1 else 2
    nrows = (len(recs) + cols - 1) // cols
    width, height = 6.4 * cols * 0.85 if cols > 1 else 6.4, 4.2 * nrows + 0.6
    fig = _figure(width, height)
    metric = metric_desc(group, splits=False)
    title = _wrap(f"The answer against training cost — {group.key.label}\n{metric}; bars: 95% intervals over "
                  "seeds and test images (the answer table's)", 100)
    fig.suptitle(title, fontsize=8, y=0.995, va="top")
    # the layout first: labels are placed in pixels, which a later adjustment would move
    fig.subplots_adjust(top=1 - (0.16 * (title.count("\n") + 1) + 0.25) / height, bottom=0.55 / height + 0.08,
                        hspace=0.45, wspace=0.28, left=0.09, right=0.97)
    for i, rec in enumerate(recs):
        ax = fig.add_subplot(nrows, cols, i + 1)
        points = {}
        for st in rec.standings:
            if st.train_s is None:
                continue
            x, y = st.train_s, st.mean * 100
            points[st.strategy] = (x, y)
            inside = st.strategy in rec.not_separable
            colour = "#d62728" if inside else "#7f7f7f"
            if st.score.half is not None:
                ax.errorbar([x], [y], yerr=[st.score.half * 100], fmt="none", ecolor=colour, elinewidth=0.9,
                            capsize=2, zorder=2, alpha=0.8)
            ax.scatter([x], [y], s=90 if st is rec.best else 34, marker="*" if st is rec.best else "o",
                       color=colour if inside else "white", edgecolors=colour if not inside else "black",
                       linewidths=0.7, zorder=3, clip_on=False,
                       label=None if i else ("best (validation)" if st is rec.best else None))
        _cost_axes(ax, [p[0] for p in points.values()])
        ax.set_xlabel("mean training time per seed (s)", fontsize=8)
        ax.set_ylabel(f"test {METRIC_NAMES.get(rec.metric, rec.metric)} (%)", fontsize=8)
        ax.set_title(_wrap(f"{rec.modality} · {rec.backbone} · {', '.join(rec.datasets)}", 50), fontsize=8)
        ax.grid(True, lw=0.3, alpha=0.6)
        _place_labels(fig, ax, points, {s: group.label(s) for s in points})
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="*", ls="", color="#d62728", markeredgecolor="black", markersize=10,
                      label="best (selected on validation)"),
               Line2D([], [], marker="o", ls="", color="#d62728", markeredgecolor="black", markersize=6,
                      label="not separable from the best"),
               Line2D([], [], marker="o", ls="", color="white", markeredgecolor="#7f7f7f", markersize=6,
                      label="shown below the best")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    return fig


def pareto_means_figure(group: Group) -> Any:
    """The Pareto view of means over the cases (no intervals: a group with more answers than panels)."""
    points, n_cases, common = pareto_points(group)
    if not points:
        return None
    # Means over different cases (a strategy measured on another backbone) are not comparable: no frontier then.
    front = pareto_front(points) if common else set()
    fig = _figure(6.4, 4.6)
    ax = fig.add_subplot(1, 1, 1)
    fig.subplots_adjust(left=0.11, right=0.96, bottom=0.11)
    labelled = False
    for s, (x, y) in sorted(points.items()):
        on = s in front
        label = None
        if on and not labelled:
            label, labelled = "on the Pareto frontier (no strategy both cheaper and better)", True
        ax.scatter([x], [y], s=46 if on else 30, color="#d62728" if on else "#7f7f7f", zorder=3,
                   edgecolors="black" if on else "none", linewidths=0.6, label=label, clip_on=False)
    fr = sorted(points[s] for s in front)
    if len(fr) > 1:  # a frontier of one point is a point, not a line
        ax.plot([p[0] for p in fr], [p[1] for p in fr], color="#d62728", lw=1.2, zorder=2)
    _cost_axes(ax, [p[0] for p in points.values()])
    ax.set_xlabel("mean training time per seed (s)")
    ax.set_ylabel("mean test metric (%)")
    scope = (f"{n_cases} case{'s' if n_cases != 1 else ''} common to all strategies" if common
             else "each strategy's own cases (no case has every strategy, so no frontier is drawn)")
    title = _wrap(f"Accuracy against training cost — {group.key.label}\n{metric_desc(group, splits=False)}; "
                  f"means over {scope}", 90)
    fig.suptitle(title, fontsize=8, y=0.985, va="top")
    fig.subplots_adjust(top=1 - (0.16 * (title.count("\n") + 1) + 0.2) / 4.6)
    ax.grid(True, lw=0.3, alpha=0.6)
    if front:
        ax.legend(loc="lower right", fontsize=7)
    _place_labels(fig, ax, points, {s: group.label(s) for s in points})
    return fig


PLOT_KINDS = ("delta", "pareto")  # a group's plots, file names <group slug>-<kind>.png


def plot_group(group: Group, out: Path, prefix: str) -> dict[str, str]:
    """Write the group's plots into ``out``; kind -> file name of those written."""
    written = {}
    for kind, fn in zip(PLOT_KINDS, (delta_heatmap, pareto_plot)):
        name = f"{prefix}-{kind}.png"
        if fn(group, out / name):
            written[kind] = name
    return written

