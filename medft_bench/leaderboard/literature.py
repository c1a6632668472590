"""This suite's FT, LP and kNN beside the published numbers on the same official test splits.

A real group's test ACC and AUC (medmnist's own metrics, the ones the papers report) per dataset, mean and
standard deviation over seeds, next to the rows of ``references.json`` for that dataset: MedMNIST v2 (trained
from scratch) and MedMNIST+ (ImageNet-pretrained DenseNet-121, E2E = our FT, LP = our LP). The published rows
are labelled and never enter a mean, rank or claim; the protocols differ, and the table says how.
"""

from __future__ import annotations

import statistics

from medft_bench.leaderboard import references
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.names import canonical_name
from medft_bench.leaderboard.tables.format import DASH, title
from medft_bench.leaderboard.tables.model import Table, cell, left, right

OURS = ("ft", "lp", "knn")  # the rows whose counterparts the papers publish
SHORT = {"medmnist_v2_table3": "MedMNIST v2", "medmnist_plus_densenet121": "MedMNIST+"}  # source id -> its name


def _mean(values: list[float], scale: float) -> str:
    return DASH if not values else f"{statistics.fmean(values) * scale:.1f}"


def _mean_sd(values: list[float], scale: float) -> str:
    if not values:
        return DASH
    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {statistics.stdev(values) * scale:.1f}"


def _published_rows(dataset: str) -> list[tuple[str, str, str, str]]:
    """(source, model, ACC %, AUC %) of every published row for ``dataset``, as published (rescaled to %)."""
    out = []
    for src in references.sources({dataset}):
        keys = [k for k, _ in src["columns"]]
        scale = 100.0 if src["scale"] == "fraction" else 1.0
        short = SHORT.get(src["id"], src["paper"].split(",")[0])
        for r in src["rows"]:
            if "acc" in keys:  # one model per row (MedMNIST v2)
                out.append((short, str(r.get("model", "")), f"{r['acc'] * scale:.1f}", f"{r['auc'] * scale:.1f}"))
            else:  # one column per resolution (MedMNIST+)
                for px, how in (("28", "28→224 px padded"), ("224", "224 px")):
                    if f"acc_{px}" in r:
                        out.append((short, f"DenseNet-121 {r.get('scheme', '')}, {how}",
                                    f"{r[f'acc_{px}'] * scale:.1f}", f"{r[f'auc_{px}'] * scale:.1f}"))
    return out


def literature_table(group: Group) -> Table | None:
    """FT, LP and kNN of a real, pretrained group per dataset, beside the published rows for that dataset."""
    if group.key.synthetic or group.key.weights == "random":
        return None
    rows = []
    for dataset in sorted({c.dataset for c in group.cases}):
        for case in (c for c in group.cases if c.dataset == dataset):
            for strategy, row in sorted(case.rows.items()):
                if canonical_name(strategy) not in OURS:
                    continue
                tests = [r.test for r in row.ok]
                label = f"this suite: {case.backbone} {group.label(strategy)} (n={len(tests)})"
                auc = group.analysis.scores.get((case.dataset, case.backbone, strategy))
                rows.append([cell(dataset), cell(label), cell(_mean([t["acc"] for t in tests], 100.0)),
                             cell(_mean_sd([t["auc"] for t in tests], 100.0) if auc is None or row.metric != "auc"
                                  else f"{auc.value * 100:.1f}" + ("" if auc.half is None
                                                                   else f" ± {auc.half * 100:.1f}"))])
        for source, model, acc, auc in _published_rows(dataset):
            rows.append([cell(dataset, "muted"), cell(f"{source} (pub.): {model}", "muted"),
                         cell(acc, "muted"), cell(auc, "muted")])
    if not rows:
        return None
    return Table("literature", title(group, "Beside the literature"),
                 [left("dataset", key=True), left("source: model", key=True, wrap=64), right("test ACC %"),
                  right("test AUC %")], rows,
                 caption="test ACC and AUC (medmnist's metrics) on the official test split; this suite's rows: the "
                         "mean over seeds, AUC ± half its 95% interval over seeds and test images (the answer's)",
                 notes=["(pub.): published rows, numbers others measured under their own protocols, as published; "
                        "they never enter this suite's means, ranks or claims. MedMNIST v2 (Yang et al., Scientific "
                        "Data 2023, Table 3) trains from scratch "
                        "(100 epochs, ResNets at 28 px or upsampled to 224 px); MedMNIST+ (Doerrich et al., Scientific "
                        "Reports 2025) fine-tunes ImageNet "
                        "DenseNet-121 (E2E = FT, LP = linear probe; up to 100 epochs, AdamW 1e-4) with the 28 px "
                        "images zero-padded to 224. This tier's budget (input size, training images, epochs) is in "
                        "its title and in docs/running.md: a gap to a published row is the price of that budget "
                        "first, a finding second."])


def _one(values: set[str]) -> str:
    return ", ".join(sorted(values)) if values else DASH


def provenance_table(group: Group) -> Table | None:
    """Which data file and which weights every case of a real group ran on: the file's MD5 and whether it is
    the official one, the weights' source and sha256 (a case whose seeds disagree lists every value)."""
    if group.key.synthetic:
        return None
    rows = []
    for case in group.cases:
        runs = [r for row in case.rows.values() for r in row.ok]
        data = [r.data for r in runs]
        weights = [r.weights for r in runs]
        official = {"official" if d.get("md5_verified") else "NOT the official file" for d in data}
        source = {f"{w.get('package', w.get('source', ''))} {w.get('package_version', '')}".strip() for w in weights}
        rows.append([cell(case.dataset), cell(case.backbone), cell(_one({str(d.get("md5", "")) for d in data})),
                     cell(_one(official), None if official == {"official"} else "warn"),
                     cell(_one(source)), cell(_one({str(w.get("sha256", DASH)) for w in weights}))])
    if not rows:
        return None
    return Table("provenance", title(group, "Data and weights"),
                 [left("dataset", key=True), left("backbone", key=True), left("data MD5"), left("file"),
                  left("weights"), left("weights sha256", wrap=64)], rows,
                 caption="every ok record of the case; official: the MD5 medmnist publishes for that file")
