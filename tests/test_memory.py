"""Each record's peak host memory is its own cell's (docs/record.md, costs.peak_host_scope)."""

from __future__ import annotations

import pytest


def test_peak_host_memory_is_the_cells_own_after_a_reset() -> None:
    import numpy as np

    from medft_bench.results.record import host_peak, reset_host_peak

    if not reset_host_peak():
        pytest.skip("no per-cell high-water mark on this system (records say peak_host_scope: process)")
    big = np.ones(300 * 1024 * 1024 // 8)  # 300 MB, touched
    del big
    first, scope = host_peak()
    assert scope == "cell" and first >= 300
    assert reset_host_peak()
    second, scope = host_peak()
    assert scope == "cell" and second < first - 200  # the earlier peak is gone from this reading
    assert host_peak()[1] == "process"  # a reset serves one reading


def test_a_computed_record_says_what_its_peak_covers(tmp_path) -> None:
    from medft_bench.results.record import reset_host_peak
    from medft_bench.runner import run_or_reuse
    from tests.helpers import tiny_cell

    expected = "cell" if reset_host_peak() else "process"
    out = run_or_reuse(tiny_cell(strategy="lp"), tmp_path)
    assert out.record["costs"]["peak_host_scope"] == expected and out.record["costs"]["peak_host_rss_mb"] > 0
