"""Each case against its frozen-feature references (kNN and the linear probe on the same features)."""

from __future__ import annotations

from typing import Any

from medft_bench.gates import COLLINEAR
from medft_bench.leaderboard.aggregate import Group
from medft_bench.leaderboard.analysis import unconverged_probes
from medft_bench.leaderboard.names import canonical_name, strategy_sort_key
from medft_bench.leaderboard.stats import same
from medft_bench.leaderboard.tables.format import CASE_KEYS, DASH, UNCONVERGED_MARK, metric_desc, pct, pp, title
from medft_bench.leaderboard.tables.model import Table, cell, left, right

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


def _feature_cosine(rows: list[Any]) -> float | None:
    """The mean ``head.feature_cosine`` of the first of ``rows`` (LP's, else kNN's) whose ok runs record it."""
    for row in rows:
        values = [v for v in ((r.record.get("head") or {}).get("feature_cosine") for r in row.ok)
                  if isinstance(v, (int, float))]
        if values:
            return sum(values) / len(values)
    return None
