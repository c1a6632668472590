"""The engine's performance options: torch.compile wiring and the costs it reports."""

from __future__ import annotations

import pytest
import torch

from medft_bench.results.record import validate
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell
from medft_bench.training.engine import build_context
from tests.helpers import tiny_cell


def test_costs_report_early_stopping_and_no_compile() -> None:
    rec = compute_cell(tiny_cell("resnet18", "ft", epochs=2), RunEnv(progress=False)).record
    validate(rec)
    assert rec["costs"]["early_stopping_s"] >= 0
    assert rec["costs"]["compile_s"] is None
    assert rec["costs"]["feature_cache"]["extracted"] == []  # FT never uses cached features


def test_compile_keeps_names_and_reports_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # The eager backend goes through torch.compile's wiring without inductor's minutes of C++ compilation.
    real = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: real(self, backend="eager"))
    plain, _ = build_context(tiny_cell("resnet18", "ft"))
    ctx, _ = build_context(tiny_cell("resnet18", "ft", compile=True))
    assert ctx.param_names == plain.param_names
    assert list(ctx.model.state_dict()) == list(plain.model.state_dict())
    rec = compute_cell(tiny_cell("resnet18", "ft", epochs=2, compile=True), RunEnv(progress=False)).record
    validate(rec)
    assert rec["status"] == "ok", rec["error"]
    assert rec["config"]["train"]["compile"] is True
    assert rec["costs"]["compile_s"] is not None and rec["costs"]["compile_s"] >= 0
