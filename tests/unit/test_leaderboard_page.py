"""The leaderboard's one page structure (leaderboard/page.py), walked by every renderer, and its analysis
(leaderboard/analysis.py), read by both the tables and summary.json."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest

from medft_bench.leaderboard.aggregate import aggregate
from medft_bench.leaderboard.load import load_inputs
from tests.helpers import make_record, tuned_record, write

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = {"ft": 0.70, "lp": 0.72, "knn": 0.80, "lp_ft": 0.75, "l2_sp": 0.70}


def _records(root: Path) -> None:
    """Two datasets x two backbones x three seeds, a tuned FT and LP-FT (survival), a synthetic group (a caveat)
    and a file that is no record (the inputs' section)."""
    for dataset in ("pathmnist", "pneumoniamnist"):
        for b, backbone in enumerate(("resnet50", "densenet121")):
            for s, mean in STRATEGIES.items():
                for seed in range(3):
                    value = mean + 0.01 * seed - 0.06 * b * (s == "lp_ft")
                    write(root, make_record(dataset=dataset, backbone=backbone, strategy=s, seed=seed, primary=value))
            for s, mean in (("ft", 0.80), ("lp_ft", 0.77)):
                write(root, tuned_record(dataset=dataset, backbone=backbone, strategy=s, primary=mean))
    for s in ("ft", "lp"):
        write(root, make_record(tier="smoke", synthetic=True, weights="random", strategy=s, primary=0.6))
    (root / "quick" / "broken.json").write_text("{not json")


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    from medft_bench.leaderboard.publish import publish

    root = tmp_path_factory.mktemp("results")
    _records(root)
    pub = publish([root], out=root / "board")
    return root, pub


def _headings(page) -> list[str]:
    return [s.heading for s in page.sections]


def test_the_page_holds_every_section_once_in_order(board) -> None:
    from medft_bench.leaderboard.page import leaderboard_page

    _, pub = board
    page = leaderboard_page(pub.groups, pub.inputs)
    ids = [s.id for s in page.sections]
    assert ids == ["recommendations", *(g.key.slug for g in pub.groups), "claims", "survival", "inputs"]
    assert len(set(ids)) == len(ids)
    groups = [s for s in page.sections if s.group is not None]
    assert [s.heading for s in groups] == [g.key.label for g in pub.groups]
    assert any(s.caution for s in groups) and [t.key for t in page.sections[-1].tables] == ["problems"]


def test_html_markdown_and_terminal_walk_the_same_sections_and_tables(board) -> None:
    from rich.console import Console

    from medft_bench.leaderboard import references
    from medft_bench.leaderboard.page import leaderboard_page
    from medft_bench.leaderboard.render_rich import render_plain, render_rich

    root, pub = board
    page = leaderboard_page(pub.groups, pub.inputs)
    headings = [s.heading for s in page.shown(groups_inline=True)]
    titles = [t.title for s in page.shown(groups_inline=True) for t in s.tables]
    assert headings == [h for h in _headings(page) if h != "The study's claims, recomputed from these results"]

    html = (pub.out / "leaderboard.html").read_text()
    assert [unescape(h) for h in re.findall(r"<h2 id=\"[^\"]+\">(.*?)</h2>", html)] == [*headings, "Run metadata"]
    assert [unescape(h) for h in re.findall(r"<h3 id=\"[^\"]+\">(.*?)</h3>", html)
            if not h.startswith("Plots — ")] == titles

    plain = render_plain(pub.groups, pub.inputs, pub.meta, width=250)
    shown = re.findall(r"^#+\n(.+)\n#+$", plain, flags=re.M)
    assert shown == headings
    assert [t for t in re.findall(r"^(.+)\n=+$", plain, flags=re.M)] == titles

    buf = io.StringIO()
    render_rich(pub.groups, pub.inputs, pub.meta, console=Console(file=buf, width=250, color_system=None))
    rules = re.findall(r"^─+ (.+?) ─+$", buf.getvalue(), flags=re.M)  # a section's rule: its heading centred
    assert rules == ["medft-bench leaderboard", *headings]

    # Markdown: the index holds the sections (the groups listed, each on its tier's page), at the same places.
    index = (pub.out / "README.md").read_text()
    listed = ["Tables" if h in {g.key.label for g in pub.groups} else h for h in _headings(page)]
    listed = [h for i, h in enumerate(listed) if h != "Tables" or listed[i - 1] != "Tables"]
    assert re.findall(r"^## (.+)$", index, flags=re.M) == ["Run metadata", *listed, references.TITLE]
    for g in pub.groups:
        tier = (pub.out / f"{g.key.tier}.md").read_text()
        assert f"## {g.key.label}\n" in tier
        assert all(f"### {t.title}\n" in tier for s in page.sections if s.group is g for t in s.tables)


def test_summary_json_holds_the_analysis_the_pages_show(board) -> None:
    from medft_bench.leaderboard.tables.format import pp

    _, pub = board
    summary = json.loads((pub.out / "summary.json").read_text())
    quick = next(g for g in pub.groups if g.key.tier == "quick" and g.key.protocol == "study")
    js = next(g for g in summary["groups"] if g["slug"] == quick.key.slug)

    table = next(t for t in _tables(pub, quick) if t.key == "strategies")
    col = table.headers.index("wins/ties/losses (cases)")
    within = table.headers.index("within-case seeds p < 0.05")
    shown = {r[0].text: (r[col].text, r[within].text) for r in table.rows}
    assert set(js["versus_ft"]) == {s for s in quick.strategies if s != "ft"}
    for s, v in js["versus_ft"].items():
        assert shown[quick.label(s)] == (f"{v['wins']}/{v['ties']}/{v['losses']}",
                                         f"{v['within_case_above']}+ / {v['within_case_below']}− of "
                                         f"{v['within_case_tested']}")
        assert v["wins"] + v["ties"] + v["losses"] == 4
    assert js["versus_ft"]["knn"]["wins"] == 4 and js["versus_ft"]["lp_ft"]["wins"] == 2

    frozen = next(t for t in _tables(pub, quick) if t.key == "frozen")
    assert len(frozen.rows) == len(js["frozen_references"]) == 4
    gap, lpft = frozen.headers.index("LP − kNN"), frozen.headers.index("LP-FT − LP")
    for row, f in zip(frozen.rows, js["frozen_references"]):
        assert (row[0].text, row[1].text) == (f["dataset"], f["backbone"])
        assert row[gap].text == pp(f["lp_minus_knn"]) and row[lpft].text == pp(f["lp_ft_minus_lp"])
        assert f["lp_minus_knn"] == pytest.approx(-0.08) and f["probe_suspect"]
        assert (row[gap].style == "warn") == f["probe_suspect"] and (row[lpft].style == "warn") == f["lp_ft_lost"]
    assert [f["lp_ft_lost"] for f in js["frozen_references"]] == [True, False, True, False]  # densenet121 first

    answer = next(t for t in _tables(pub, quick) if t.key == "recommendations")
    best = [r[2].text for r in answer.rows if r[1].text == "best"]
    assert best == [quick.label(r["best"]) for r in js["recommendations"]]
    in_set = [r[2].text for r in answer.rows if r[1].text in ("best", "in set")]
    assert in_set == [quick.label(s) for r in js["recommendations"] for s in r["not_separable"]]


def _tables(pub, group):
    from medft_bench.leaderboard.page import leaderboard_page

    page = leaderboard_page(pub.groups, pub.inputs)
    return [i.table for s in page.sections for i in s.items if i.group is group]


def test_recommend_runs_once_per_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medft_bench.leaderboard import analysis
    from medft_bench.leaderboard import recommend as rec_module
    from medft_bench.leaderboard.publish import publish
    from medft_bench.leaderboard.render_rich import render_plain

    _records(tmp_path)
    calls: list[str] = []
    original = rec_module.recommend

    def counted(group):
        calls.append(group.key.slug)
        return original(group)

    monkeypatch.setattr(rec_module, "recommend", counted)
    monkeypatch.setattr(analysis, "recommend", counted)  # analysis.analyze, the one caller, imports it on top
    pub = publish([tmp_path], out=tmp_path / "board")
    render_plain(pub.groups, pub.inputs, pub.meta)  # the terminal after the pages: the same analysis
    assert sorted(calls) == sorted(g.key.slug for g in pub.groups)


def test_the_vocabulary_is_the_engines(tmp_path: Path) -> None:
    from medft_bench import metrics, tiers, vocabulary
    from medft_bench.leaderboard.group_key import tier_sort_key

    assert vocabulary.tier_order() == tuple(tiers.TIERS) and "heavy" not in vocabulary.tier_order()
    assert metrics.METRICS is vocabulary.METRICS and metrics.primary_metric is vocabulary.primary_metric
    assert sorted(["full", "mine", "smoke", "real"], key=tier_sort_key) == ["real", "smoke", "full", "mine"]
    write(tmp_path, make_record(dataset="chestmnist", primary=0.7))
    (group,) = aggregate(load_inputs([tmp_path]).runs)
    assert group.rows[0].metric == vocabulary.primary_metric("multi-label, binary-class") == "auc"


def test_the_leaderboard_runs_without_torch(tmp_path: Path) -> None:
    """The leaderboard reads records, never the engine: it must run where torch is not installed."""
    write(tmp_path, make_record(strategy="ft"))
    write(tmp_path, make_record(strategy="lp", primary=0.7))
    code = (
        "import importlib.abc, runpy, sys\n"
        "class NoTorch(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'torchvision', 'timm'):\n"
        "            raise ImportError('no ' + name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "sys.argv = ['leaderboard', *sys.argv[1:]]\n"
        "try:\n"
        "    runpy.run_module('medft_bench.leaderboard', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path), "--out", str(tmp_path / "board"), "--plain"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "board" / "summary.json").is_file() and "Which strategy" in run.stdout
