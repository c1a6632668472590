"""The README shows the published answer as it is: its excerpt is lines of leaderboard/README.md, so a
republished leaderboard that changes the answer fails here until the README is brought up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- excerpt of leaderboard/README.md"


def _excerpt() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(MARK) + r".*?-->\n(.*?)<!-- end of excerpt -->", text, re.S)
    assert block, "the README has no excerpt between its markers"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_excerpt_is_the_published_answer() -> None:
    published = set((ROOT / "leaderboard" / "README.md").read_text().splitlines())
    lines = _excerpt()
    assert len(lines) >= 5
    stale = [line for line in lines if line not in published]
    assert not stale, f"README.md's excerpt differs from leaderboard/README.md: {stale[:3]}"


def test_the_published_answer_names_its_not_separable_sets() -> None:
    summary = json.loads((ROOT / "leaderboard" / "summary.json").read_text())
    answers = [r for g in summary["groups"] if not g["synthetic"] for r in g["recommendations"]]
    assert answers
    for r in answers:
        assert r["metric"] == "auc" and r["not_separable"][0] == r["best"]
        assert set(r["not_separable"]) <= {s["strategy"] for s in r["standings"]}
