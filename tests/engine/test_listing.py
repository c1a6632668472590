"""`list tiers` reads the records beside the grid it builds (the grid imports the data layer, so: engine lane)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import make_record, write


def test_list_tiers_reads_past_a_deeply_nested_json_file(tmp_path: Path) -> None:
    from medft_bench.listing import tier_rows

    results = tmp_path / "results"
    write(results, make_record(strategy="ft", primary=0.7))
    (results / "quick" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    assert "smoke" in [row[0] for row in tier_rows(results)]
