"""The README shows the published answer as it is: its excerpt is lines of leaderboard/README.md, so a
republished leaderboard that changes the answer fails here until the README is brought up to date."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
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


# -- issue 42, item 3: help, listings and docs checked against the code ----------------------------------------


def _tier_table() -> dict[str, str]:
    """docs/running.md's tier table: tier name -> its cells column."""
    text = (ROOT / "docs" / "running.md").read_text()
    section = text[text.index("## Tiers"):]
    section = section[:section.index("\n## ", 3)] if "\n## " in section[3:] else section
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "docs/running.md has no tier table under ## Tiers"
    out = {}
    for line in rows:
        cols = [c.strip() for c in line.strip().strip("|").split("|")]
        out[re.match(r"`([^`]+)`", cols[0]).group(1)] = cols[-1]
    return out


def test_the_running_docs_tier_table_counts_the_cells_list_tiers_counts() -> None:
    from medft_bench.grid import build_grid
    from medft_bench.tiers import TIERS

    table = _tier_table()
    assert set(table) == set(TIERS), "docs/running.md's tier table and tiers.TIERS name other tiers"
    for name, tier in TIERS.items():
        documented = int(re.match(r"[\d,]+", table[name]).group(0).replace(",", ""))
        assert documented == len(build_grid(tier, check=False)), f"docs/running.md: tier {name}'s cells"


def test_run_help_names_every_tier_weight_source_and_option(capsys) -> None:
    import pytest

    from medft_bench.__main__ import main
    from medft_bench.options import OPTIONS, WEIGHT_SOURCES
    from medft_bench.tiers import TIERS

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"tier preset: {', '.join(TIERS)} " in text
    for source in WEIGHT_SOURCES:
        assert f"{source} (" in text
    assert all(opt.name in text for opt in OPTIONS if opt.only in (None, "cli"))
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "the options are pytest's" not in capsys.readouterr().out


def test_list_datasets_knows_the_bundled_files(tmp_path, monkeypatch) -> None:
    from medft_bench.data import medmnist as mm
    from medft_bench.listing import dataset_rows

    monkeypatch.delenv(mm.NO_BUNDLED_ENV, raising=False)  # tests/conftest.py hides them from the other tests
    rows = {r[0]: r[4] for r in dataset_rows(tmp_path)}  # an empty data root: only the bundled files are here
    bundled = [flag for flag in mm.flags() if mm.bundled_file(flag, 28) is not None]
    assert {"pneumoniamnist", "breastmnist"} <= set(bundled)
    for flag in mm.flags():
        assert rows[flag] == ("28 px bundled with medft-bench" if flag in bundled else "no (downloaded when first run)")
