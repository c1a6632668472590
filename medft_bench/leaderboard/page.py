"""The leaderboard's page structure, built once and walked by every renderer: its sections in order, each with
its heading, its text and its tables (Markdown: :mod:`render_markdown`, HTML: :mod:`render_html`, terminal:
:mod:`render_rich`). A renderer decides how a section looks, never which sections there are, in what order, or
what they are called; so that the pages, the HTML and the terminal cannot drift apart.

The leaderboard page: the answer (recommendations), one section per group, the study's claims over every group,
study against tuned protocol, the inputs' problems. The Markdown pages split the same sections over files: the
index lists the groups and digests their claims, and each tier's page (:func:`tier_page`) holds its groups'
sections; the HTML page and the terminal show the groups' sections in full, and no digest (:meth:`Page.shown`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.load import Inputs
from medft_bench.leaderboard.survival import protocol_pairs
from medft_bench.leaderboard.tables import group_tables
from medft_bench.leaderboard.tables.claims import claims_overview
from medft_bench.leaderboard.tables.model import Table
from medft_bench.leaderboard.tables.notes import notes_table, problems_table
from medft_bench.leaderboard.tables.recommendations import recommendation_table
from medft_bench.leaderboard.tables.strategy import survival_table
from medft_bench.leaderboard.views import view_key

TITLE = "medft-bench leaderboard"
RECOMMENDATIONS = "Which strategy for my modality and backbone?"
CLAIMS = "The study's claims, recomputed from these results"
SURVIVAL = "Does it survive tuning?"
INPUTS = "Inputs"

RECOMMENDATIONS_INTRO = (
    "For each modality and backbone: the strategy selected on validation, every strategy's test AUC with a 95% "
    "interval that carries both the training seeds and the test images, and the strategies the data cannot "
    "separate from the best (the answer is that set, not one winner), with how often validation picks each, "
    "balanced accuracy beside, and the training cost. Each group (tier, data, weights, image size, protocol) is "
    "answered on its own.")
CLAIMS_INTRO = (
    "Davila, Colan & Hasegawa (2024) claim that LP-FT beats FT in more than half of the cases, that Auto-RGN gains "
    "up to 11% for specific modalities, and that DenseNet-121 gains most from the alternatives to FT. Each group "
    "recomputes them from its own cells (details on its page); gains are in percentage points (pp) of the metric.")
SURVIVAL_INTRO = (
    "Each strategy's mean Δ against FT under the study's fixed learning rate next to its Δ when every strategy (FT "
    "included) runs at its own best learning rate on validation, on the same cases.")

PLOT_ORDER = ("delta", "pareto")
PLOT_TITLES = {"delta": "Δ against FT", "pareto": "The answer against training cost"}
PLOT_CAPTIONS = {
    "delta": "Heatmap: Δ against FT in percentage points, strategies × cases (grey: no result).",
    "pareto": "The answer against training cost, one panel per modality and backbone: each strategy's test score "
              "with the answer table's 95% interval against its mean training time per seed; the star is the pick "
              "on validation, filled points the rest of its set, hollow ones the strategies shown below it. A group "
              "with more than six answers shows the means over its cases instead, the red line joining the "
              "strategies no other beats on both."}


# The practitioner's views of each case (leaderboard/views.py): key "kind:dataset:backbone"
VIEW_TITLES = {"curves": "Learning curves", "confusion": "Confusion matrices and per-class recall and precision",
               "roc": "ROC curves"}
VIEW_CAPTIONS = {
    "curves": "Validation score after each epoch, one panel per strategy and one line per seed (the records' "
              "epochs; stages joined in the order they ran): where a strategy was still rising, or peaked early.",
    "confusion": "Test images at the argmax (binary: P(positive) > 0.5), summed over seeds, rows normalised: the "
                 "answer's pick, FT, LP and kNN where present. Every record's per-class numbers are in "
                 "per-class.csv.",
    "roc": "Test ROC curves of the same strategies, one line per seed, from the per-image predictions kept beside "
           "each record."}


@dataclass(frozen=True)
class Figure:
    """A plot of a group: the PNG's file name (next to the pages), what it shows, and how to read it."""

    kind: str  # a key of PLOT_TITLES
    file: str
    title: str
    caption: str


@dataclass(frozen=True)
class Item:
    """A table in a section, with the group it is about (None: about every group): anchors are the group's slug
    and the table's key, and the HTML page sets the group's cost plot beside its answer."""

    table: Table
    group: Group | None = None


@dataclass
class Section:
    """One section of a page, in its place: ``heading`` None puts its tables at the page's top level."""

    id: str  # the section's anchor, unique on the page (a group's: its slug)
    heading: str | None
    items: list[Item]
    intro: str = ""
    group: Group | None = None  # set for a group's own section
    # A digest of the groups' sections (the claims of every group side by side): shown where the groups' own
    # sections are on other pages (the Markdown index), not where they stand in full (HTML, terminal).
    digest: bool = False
    caution: str | None = None  # why a group's numbers are no measure of real transfer
    figures: list[Figure] = field(default_factory=list)

    @property
    def tables(self) -> list[Table]:
        return [item.table for item in self.items]


@dataclass
class Page:
    """A page's title and its sections in order."""

    title: str
    sections: list[Section]

    def shown(self, groups_inline: bool) -> list[Section]:
        """The sections in order, as a renderer shows them: with ``groups_inline`` (HTML, terminal) the groups'
        sections in full and no digest of them; without (the Markdown index, which links the groups' pages) the
        digests too."""
        return [s for s in self.sections if not (groups_inline and s.digest)]


def _figures(group: Group, plots: dict[str, dict[str, str]]) -> list[Figure]:
    files = plots.get(group.key.slug, {})
    views = [Figure(kind, files[key], f"{VIEW_TITLES[kind]} — {cs.dataset}, {cs.backbone} — {group.key.label}",
                    VIEW_CAPTIONS[kind])
             for cs in group.cases for kind in VIEW_TITLES
             if (key := view_key(kind, cs.dataset, cs.backbone)) in files]
    return [*(Figure(k, files[k], f"{PLOT_TITLES[k]} — {group.key.label}", PLOT_CAPTIONS[k]) for k in PLOT_ORDER
              if k in files), *views]


def group_section(group: Group, all_metrics: bool = False, plots: dict[str, dict[str, str]] | None = None) -> Section:
    """A group's section: its tables (:func:`tables.group_tables`) and its plots, under its label."""
    return Section(group.key.slug, group.key.label, [Item(t, group) for t in group_tables(group, all_metrics)],
                   group=group, caution=group.key.caveat, figures=_figures(group, plots or {}))


def _survival_items(groups: list[Group]) -> list[Item]:
    return [Item(t, tuned) for study, tuned in protocol_pairs(groups)
            if (t := survival_table(study, tuned)) is not None]


def leaderboard_page(groups: list[Group], inputs: Inputs, all_metrics: bool = False,
                     plots: dict[str, dict[str, str]] | None = None) -> Page:
    """The whole leaderboard's sections in order; a section without tables is left out (a group's never is)."""
    recs = [Item(t, g) for g in groups if (t := recommendation_table(g)) is not None]
    extras = [Item(t) for t in (problems_table(inputs), notes_table(inputs)) if t is not None]
    sections = [Section("recommendations", RECOMMENDATIONS, recs, RECOMMENDATIONS_INTRO),
                *(group_section(g, all_metrics, plots) for g in groups),
                Section("claims", CLAIMS, [Item(claims_overview(groups))] if groups else [], CLAIMS_INTRO,
                        digest=True),
                Section("survival", SURVIVAL, _survival_items(groups), SURVIVAL_INTRO),
                Section("inputs", INPUTS, extras)]
    return Page(TITLE, [s for s in sections if s.items or s.group is not None])


def tier_page(page: Page, tier: str) -> Page:
    """One tier's Markdown page, cut from the leaderboard ``page`` (no table is built again): its groups'
    sections, then its study-against-tuned tables at the page's top level (the index holds their section)."""
    sections = [s for s in page.sections if s.group is not None and s.group.key.tier == tier]
    survival = [i for s in page.sections if s.id == "survival" for i in s.items
                if i.group is not None and i.group.key.tier == tier]
    return Page(f"Tier {tier}", [*sections, *([Section("survival", None, survival)] if survival else [])])
