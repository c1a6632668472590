"""The unit lane never imports torch: `pytest tests/unit` fails when torch was imported by the time the session
ends (a test, the code it calls, or the pytest plug-in). A test that needs torch belongs in tests/engine/."""

from __future__ import annotations

import sys

import pytest

HEAVY = "torch"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    items = getattr(session, "items", [])
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    deselected = reporter.stats.get("deselected", []) if reporter is not None else []
    # Checked where the session collected the unit lane alone (`pytest tests/unit`, or -m unit on it): a session
    # that also collected other lanes imported torch for them.
    if not items or deselected or not all(item.get_closest_marker("unit") for item in items):
        return
    if HEAVY in sys.modules:
        if reporter is not None:
            reporter.write_line(f"\nthe unit lane imported {HEAVY}: move the test that needs it to tests/engine/ "
                                "(python -X importtime shows the importer)", red=True, bold=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
