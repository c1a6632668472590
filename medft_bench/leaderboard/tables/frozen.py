"""Each case against its frozen-feature references (kNN and the linear probe on the same features)."""

from __future__ import annotations

from medft_bench.gates import COLLINEAR
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.analysis import FROZEN_GAP
from medft_bench.leaderboard.tables.format import CASE_KEYS, DASH, UNCONVERGED_MARK, metric_desc, pct, pp, title
from medft_bench.leaderboard.tables.model import Table, cell, left, right


def frozen_reference_table(group: Group) -> Table | None:
    """Each case against its frozen-feature references, as a reviewer reads a result: the kNN probe and the
    converged linear probe see the same features; a probe far below kNN has not converged, LP-FT below LP lost
    what it started from, and a strategy that trains at least the head below LP did worse than not moving the
    backbone at all."""
    rows = []
    for f in group.analysis.frozen:
        lp_text = pct(f.lp) + (f" {UNCONVERGED_MARK} {f.lp_unconverged}/{f.lp_seeds}" if f.lp_unconverged else "")
        rows.append([cell(f.dataset), cell(f.backbone),
                     cell(DASH if f.feature_cosine is None else f"{f.feature_cosine:.2f}",
                          "warn" if (f.feature_cosine or 0) >= COLLINEAR else None),
                     cell(pct(f.knn)), cell(lp_text, "warn" if f.lp_unconverged else None),
                     cell(pp(f.lp_minus_knn), "warn" if f.probe_suspect else None),
                     cell(pp(f.lp_ft_minus_lp), "warn" if f.lp_ft_lost else None),
                     cell(", ".join(map(group.label, f.below_lp)) or DASH)])
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

