"""pytest plugin of the benchmark suite: its options, markers, GPU pinning under xdist, machine info, the
benchmark table's defaults and a summary of the cells at the end of the session.

Loaded only where the benchmarks are: the repository's root ``conftest.py`` names it in ``pytest_plugins``
(no ``pytest11`` entry point, so installing medft-bench adds nothing to other projects' pytest sessions).
Elsewhere: ``pytest -p medft_bench.pytest_plugin``. The grid itself (one case per cell) is built in
``benchmarks/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
from typing import Any

import pytest

from medft_bench.options import add_options, gpu_skip_reason, register_folder_datasets
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, Outcome

MARKERS = (
    "gpu: needs CUDA (skipped on a CPU unless --allow-cpu)",
    "heavy: the full tier (full-size datasets, GPU-hours)",
    "perf: performance benchmarks (benchmarks/perf)",
    "medft_cell: a cell of the benchmark grid (set by the suite; the session summary lists these)",
)
# One round per cell: pytest-benchmark's ten timing columns would repeat one number. Sorted by name, so that a
# cell's rows (study, tuned) stay together. Explicit --benchmark-columns/--benchmark-sort win.
BENCHMARK_DEFAULTS = {"benchmark_columns": ["mean"], "benchmark_sort": "name"}
CELL_PROPERTY = "medft_cell"  # the user property each grid case reports its outcome in (crosses xdist)
_RUN_ENV = pytest.StashKey[RunEnv]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("medft-bench", "medft-bench benchmark grid").addoption, "pytest")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own pytest_configure reads its options
def pytest_configure(config: pytest.Config) -> None:
    from medft_bench.install import ENGINE_MODULES, missing_module, not_installed

    if (missing := missing_module(ENGINE_MODULES)) is not None:  # a bare pytest, not the project's .venv
        raise pytest.UsageError(not_installed(missing, ["pytest", *map(str, config.invocation_params.args)]))
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    _benchmark_defaults(config)
    try:
        from medft_bench.options import apply_grid_config

        given = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
        apply_grid_config(config.option, given, "pytest")
        register_folder_datasets(config.option)  # in the main process and in every xdist worker
    except Exception as exc:
        from medft_bench.errors import MedftError

        if isinstance(exc, MedftError):
            raise pytest.UsageError(str(exc)) from None
        raise
    config.pluginmanager.register(_Summary(config), "medft-bench-summary")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            # One GPU per xdist worker: gw0 -> cuda:0, gw1 -> cuda:1, ...
            torch.cuda.set_device(int(worker[2:]) % torch.cuda.device_count())


def run_env(config: pytest.Config) -> RunEnv:
    """The run's environment, built once per process from the options and kept on the config (as pytest-benchmark
    keeps its session there): every case gets the same one."""
    if _RUN_ENV not in config.stash:
        config.stash[_RUN_ENV] = RunEnv.from_options(config.option)
    return config.stash[_RUN_ENV]


@pytest.fixture(name="run_env", scope="session")
def _run_env_fixture(pytestconfig: pytest.Config) -> RunEnv:
    return run_env(pytestconfig)


def skip_or_fail(outcome: Outcome, config: pytest.Config, record_property: Any = None) -> None:
    """A case's outcome without a result, as pytest says it: a skipped cell is skipped (a missing data file fails
    with --require-data), an error without a record fails. Anything else returns."""
    no_result = outcome.kind.skipped or (outcome.kind is Kind.ERROR and outcome.record is None)
    if record_property is not None and no_result:
        row = {"cell": outcome.cfg.cell_id, "reason": outcome.message}  # the summary groups the cells by it
        if outcome.kind is Kind.DATA_MISSING:
            row["missing"] = f"{outcome.cfg.dataset}@{outcome.cfg.img_size}"
        record_property(CELL_PROPERTY, row)
    if outcome.kind is Kind.DATA_MISSING and config.getoption("require_data"):
        pytest.fail(f"{outcome.message} (--require-data: missing data fails the cell)", pytrace=False)
    if outcome.kind.skipped:
        pytest.skip(outcome.message)
    if outcome.kind is Kind.ERROR and outcome.record is None:
        pytest.fail(outcome.message, pytrace=False)


def _benchmark_defaults(config: pytest.Config) -> None:
    """The suite's table defaults, unless the command line says otherwise or the perf benchmarks run."""
    if not hasattr(config.option, "benchmark_columns") or "perf" in (config.getoption("-m") or ""):
        return
    given = [*config.invocation_params.args, *shlex.split(os.environ.get("PYTEST_ADDOPTS", ""))]
    for dest, value in BENCHMARK_DEFAULTS.items():
        flag = "--" + dest.replace("_", "-")
        if not any(str(a) == flag or str(a).startswith(flag + "=") for a in given):
            setattr(config.option, dest, value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # torch is asked about CUDA only when a collected item needs it: a session of pure-logic tests stays without it
    gpu_items = [item for item in items if "gpu" in item.keywords]
    reason = gpu_skip_reason(("gpu",), config.getoption("allow_cpu")) if gpu_items else None
    if reason is None:
        return
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason=reason))


# -- the session summary -----------------------------------------------------------------------------------


class _Summary:
    """The grid cases' outcomes, gathered from their reports (under xdist, the controller gets the workers'), and
    what stops some of them, found once before they run (:func:`medft_bench.prepare.blockers`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, dict[str, Any]] = {}
        self.grid: Any = None  # GridCount: a line as each cell starts (progress not off)
        self.blocked: set[str] = set()  # cells the preflight found cannot run: no line of their own as they start
        self.first_failed: dict[str, str] = {}  # a failure's reason -> the first cell that failed for it
        self._preflight_done = False
        self._unsubscribe: Any = None

    @property
    def _controller(self) -> bool:
        return not hasattr(self.config, "workerinput")  # an xdist worker runs cells; its controller reports

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from medft_bench.training.progress import resolve_mode

        items = [item for item in session.items if "cell" in getattr(getattr(item, "callspec", None), "params", {})]
        cells = [item.callspec.params["cell"] for item in items]
        if self._controller:
            self.preflight([c for c, item in zip(cells, items) if item.get_closest_marker("skip") is None])
        cells = [c for c in cells if c.cell_id not in self.blocked]
        if cells and resolve_mode(self.config.getoption("progress")) != "off":
            from medft_bench.estimate import GridCount

            self.grid = GridCount(cells, self.config.getoption("results_dir"))
            if self.config.getoption("capture") != "no":
                # Captured output shows only on failure: each epoch's line goes through pytest's own terminal
                # writer instead, so a run without -s is not silent for minutes.
                from medft_bench.training.progress import subscribe

                self._unsubscribe = subscribe(lambda event: self._write(event.line()))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the controller collects nothing: its first worker's ids name the cells (before any runs)."""
        from medft_bench.options import build_cells

        if self._preflight_done:
            return
        tier, cells = build_cells(self.config.option)
        if gpu_skip_reason(tier.marks, self.config.getoption("allow_cpu")) is not None:
            self._preflight_done = True
            return
        chosen = {nodeid.rpartition("[")[2].rstrip("]") for nodeid in ids if "::test_finetune[" in nodeid}
        self.preflight([c for c in cells if c.cell_id in chosen])

    def preflight(self, cells: list[Any]) -> None:
        """Say once, before the cells run, what stops some of them: each file, why, and where to get it."""
        if self._preflight_done or not cells or self.config.option.collectonly:
            return
        self._preflight_done = True
        from medft_bench.prepare import blockers

        found = sorted(blockers(cells, run_env(self.config)), key=lambda it: it.kind != "weights")  # failures first
        self.blocked = {i for it in found for i in it.cells}
        if found:
            for line in preflight_lines(found, len(cells), bool(self.config.getoption("require_data")),
                                        self._width()):
                self._write(line)

    def _width(self) -> int:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        return reporter._tw.fullwidth if reporter is not None else 80

    def _write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        # Inside a test pytest captures the terminal at the file-descriptor level: suspend it, as live logging does.
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(line)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._controller and session.exitstatus == pytest.ExitCode.OK and measured_nothing(self.rows.values()):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        if self.grid is not None and "[" in nodeid:
            cell = nodeid.rpartition("[")[2].rstrip("]")
            if cell in self.grid.estimates:
                self._write(self.grid.start(cell))

    def add(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties).get(CELL_PROPERTY)
        if props is None and CELL_PROPERTY not in report.keywords:
            return
        cell = (props or {}).get("cell") or report.nodeid.rpartition("[")[2].rstrip("]")
        row = dict(props or {"cell": cell})
        if report.failed:
            row["status"] = "failed"
            if "reason" not in row and report.when != "call":  # a fixture's error: pytest's own text
                row["reason"] = report.longreprtext.strip().splitlines()[-1] if report.longreprtext else ""
        elif report.skipped and not hasattr(report, "wasxfail"):  # an xfail is a diverged cell: a result
            row["status"] = "skipped"
            if "reason" not in row and isinstance(report.longrepr, tuple):
                row["reason"] = report.longrepr[2].removeprefix("Skipped: ")
        elif report.when != "call":
            return
        if cell not in self.rows or report.when == "call" or report.failed:
            self.rows[cell] = row
        if self.grid is not None and cell in self.grid.estimates and cell not in self.grid.finished:
            self.grid.finish(cell, row["status"], row.get("wall_s"))

    @pytest.hookimpl(tryfirst=True)  # before the terminal reporter keeps the report for its FAILURES section
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)
        row = self.rows.get(report.nodeid.rpartition("[")[2].rstrip("]"))
        if report.failed and row is not None and row.get("reason") and "metric" not in row:
            # The same error again (every cell of a backbone without its weights): one line, not the paragraph.
            first = self.first_failed.setdefault(row["reason"], row["cell"])
            if first != row["cell"]:
                report.longrepr = f"the same error as {first} (medft-bench's summary counts the cells)"

    # The outermost wrapper: after pytest-benchmark's timing table and pytest's short summary (a FAILED line per
    # cell), so that the last screen before the counts says why.
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Any:
        result = yield
        if self.rows:
            for line in summary_lines(list(self.rows.values()), self._width()):
                terminalreporter.write_line(line)
        return result


def measured_nothing(rows: Any) -> bool:
    """The rule of :func:`medft_bench.runner.measured_nothing`, on the summary's rows."""
    from medft_bench.runner import measured_nothing as rule

    return rule(Kind.DATA_MISSING if r.get("missing") else Kind.NOT_APPLICABLE if r["status"] == "skipped"
                else Kind.COMPUTED for r in rows)


def _wrapped(text: str, width: int, first: str, rest: str) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width=max(width - 1, 40), initial_indent=first, subsequent_indent=rest,
                         break_long_words=False, break_on_hyphens=False)


def preflight_lines(found: list[Any], total: int, require_data: bool, width: int = 80) -> list[str]:
    """The block shown before the cells run: each file that stops cells, with its cells' fate, why and the fix."""
    n = sum(len(it.cells) for it in found)
    lines = ["", f"medft-bench: {_n(n, 'cell')} of {total} cannot run as things stand (found before any ran):"]
    for it in found:
        fate = "fail" if it.kind == "weights" or require_data else "skip"
        lines += _wrapped(f"{it.kind} {it.name}, {_n(len(it.cells), 'cell')} {fate}: {it.detail}", width,
                          "  ", "      ")
    return lines


def _first_sentence(text: str) -> str:
    import re

    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]


def summary_lines(rows: list[dict[str, Any]], width: int = 80) -> list[str]:
    """The end-of-session table: one line per cell with a result, then the cells without one grouped by their
    reason (a failure's in full, a skip's first sentence), then the counts."""
    from collections import Counter

    ran = [r for r in rows if "metric" in r]
    without = [r for r in rows if "metric" not in r]
    lines = ["", "medft-bench: cells of this session"]
    if ran:
        kinds = {r.get("peak_kind") for r in ran if r.get("peak_mb") is not None}
        reasons = any(r.get("reason") for r in ran)
        table = [("cell", "status", "test metric", "train s", "peak GPU MB" if kinds == {"gpu"} else
                  "peak host MB" if kinds == {"host"} else "peak MB", *(("reason",) if reasons else ()))]
        for r in sorted(ran, key=lambda r: r["cell"]):
            metric = f"{r['metric']} {r['value']:.4f}" if r.get("value") is not None else "-"
            train = f"{r['train_s']:.1f}" if r.get("train_s") is not None else "-"
            peak = f"{r['peak_mb']:,.0f}" if r.get("peak_mb") is not None else "-"
            reason = (_first_sentence(r.get("reason") or "")[:100],) if reasons else ()
            table.append((r["cell"], r["status"], metric, train, peak, *reason))
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            lines.append(("  " + "  ".join(v.ljust(w) if i < 3 or i == 5 else v.rjust(w) for i, (v, w) in
                                           enumerate(zip(row, widths)))).rstrip())
    if without:
        groups = Counter((r["status"], r.get("reason") or "") for r in without)
        lines.append(f"  {'cells':>5}  {'status':8} reason")
        for (status, reason), count in sorted(groups.items(), key=lambda g: (g[0][0] != "failed", -g[1])):
            text = reason if status == "failed" else _first_sentence(reason)
            lines += _wrapped(text or "-", width, f"  {count:5d}  {status:8} ", " " * 18)
    counts = Counter(r["status"] for r in rows)
    order = ("computed", "reused", "flagged", "diverged", "failed", "skipped")
    lines.append("  " + ", ".join(f"{counts[s]} {s}" for s in order if counts[s]) + f" ({_n(len(rows), 'cell')})")
    files = sorted({r["missing"] for r in without if r.get("missing")})
    if files:
        named = ", ".join(f.replace("@", " at ") + " px" for f in files)
        lines += _wrapped(f"{_n(len(files), 'data file')} missing ({named}): where to get each is in the block "
                          "before the cells and with -rs; --require-data fails their cells instead", width, "  ", "  ")
    if measured_nothing(rows):
        lines += _wrapped("nothing was measured: every cell skipped, some for missing data, so the run fails "
                          "(exit status 1)", width, "  ", "  ")
    return lines


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    from medft_bench.results.environment import environment

    env = environment()
    machine_info["medft_bench"] = {**env, "nvidia_driver": _nvidia_driver() if env["gpu"] else None}
