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
    if outcome.kind is Kind.DATA_MISSING:
        if record_property is not None:
            record_property(CELL_PROPERTY, {"cell": outcome.cfg.cell_id,
                                            "missing": f"{outcome.cfg.dataset}@{outcome.cfg.img_size}"})
        if config.getoption("require_data"):
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
    reason = gpu_skip_reason(("gpu",), config.getoption("allow_cpu"))
    if reason is None:
        return
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


# -- the session summary -----------------------------------------------------------------------------------


class _Summary:
    """The grid cases' outcomes, gathered from their reports (under xdist, the controller gets the workers')."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, dict[str, Any]] = {}
        self.grid: Any = None  # GridCount: a line as each cell starts (progress not off)
        self._unsubscribe: Any = None

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from medft_bench.training.progress import resolve_mode

        cells = [item.callspec.params["cell"] for item in session.items
                 if "cell" in getattr(getattr(item, "callspec", None), "params", {})]
        if cells and resolve_mode(self.config.getoption("progress")) != "off":
            from medft_bench.estimate import GridCount

            self.grid = GridCount(cells, self.config.getoption("results_dir"))
            if self.config.getoption("capture") != "no":
                # Captured output shows only on failure: each epoch's line goes through pytest's own terminal
                # writer instead, so a run without -s is not silent for minutes.
                from medft_bench.training.progress import subscribe

                self._unsubscribe = subscribe(lambda event: self._write(event.line()))

    def _write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        # Inside a test pytest captures the terminal at the file-descriptor level: suspend it, as live logging does.
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
            reporter.ensure_newline()
            reporter.write_line(line)

    def pytest_sessionfinish(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

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


    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.add(report)

    @pytest.hookimpl(trylast=True)  # after pytest-benchmark's timing table: the last word is the cells'
    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.rows:
            for line in summary_lines(list(self.rows.values())):
                terminalreporter.write_line(line)


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The end-of-session table: one line per cell that ran, skipped cells counted by cause, then the counts."""
    from collections import Counter

    ran = [r for r in rows if r["status"] != "skipped"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    lines = ["", "medft-bench: cells of this session"]
    if ran:
        kinds = {r.get("peak_kind") for r in ran if r.get("peak_mb") is not None}
        table = [("cell", "status", "test metric", "train s", "peak GPU MB" if kinds == {"gpu"} else
                  "peak host MB" if kinds == {"host"} else "peak MB")]
        for r in sorted(ran, key=lambda r: r["cell"]):
            metric = f"{r['metric']} {r['value']:.4f}" if r.get("value") is not None else "-"
            train = f"{r['train_s']:.1f}" if r.get("train_s") is not None else "-"
            peak = f"{r['peak_mb']:,.0f}" if r.get("peak_mb") is not None else "-"
            table.append((r["cell"], r["status"], metric, train, peak))
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            lines.append("  " + "  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in
                                          enumerate(zip(row, widths))))
    counts = Counter(r["status"] for r in rows)
    order = ("computed", "reused", "flagged", "diverged", "failed")
    if ran:
        lines.append("  " + ", ".join(f"{counts[s]} {s}" for s in order if counts[s])
                     + (f", {len(skipped)} skipped" if skipped else "") + f" ({_n(len(rows), 'cell')})")
    if skipped:
        files = {r["missing"] for r in skipped if r.get("missing")}
        causes = [f"{_n(len(files), 'data file')} missing"] if files else []
        others = Counter(r.get("reason", "").split(";")[0][:80] for r in skipped if not r.get("missing"))
        causes += [f"{n} {why}" if len(others) > 1 or files else why for why, n in others.most_common()]
        lines.append(f"  {_n(len(skipped), 'cell')} skipped: {'; '.join(causes)}, see -rs"
                     + (" (--require-data fails them instead)" if files else ""))
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
