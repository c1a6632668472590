"""The package's layers (docs/architecture.md, "Layers"), as pyproject.toml's import-linter contract declares them:
every module in a layer, the contract kept, no import cycle, and no torch below compute.

Imports count wherever they are written: on top, inside functions and under ``TYPE_CHECKING`` (grimp's graph, the
one ``lint-imports`` checks).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "medft_bench"
# What core, records and the leaderboard import without: the engine's libraries, and scikit-learn (only metrics.py
# imports it; the leaderboard imports metrics where it checks kept predictions, not on import)
ABSENT = ("torch", "torchvision", "timm", "peft", "sklearn")
NEEDS_SKLEARN = "medft_bench.metrics"


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def _layers() -> list[list[str]]:
    """The layers, top to bottom, each a list of module names (a package stands for everything in it)."""
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in _contracts()["layers"]["layers"]]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(ROOT))
    try:
        return grimp.build_graph(PACKAGE, cache_dir=None)
    finally:
        sys.path.remove(str(ROOT))


def _in(module: str, entry: str) -> bool:
    return module == entry or module.startswith(entry + ".")


def test_every_module_has_its_layer(graph: grimp.ImportGraph) -> None:
    """A new module is placed in a layer (pyproject.toml), once; only package ``__init__`` modules above the
    layers' packages (medft_bench, medft_bench.results, ...) stand outside them."""
    entries = [e for layer in _layers() for e in layer]
    unplaced, twice = [], []
    for module in sorted(graph.modules):
        found = [e for e in entries if _in(module, e)]
        is_package = (ROOT / module.replace(".", "/") / "__init__.py").is_file()
        if not found and not (is_package and any(_in(e, module) for e in entries)):
            unplaced.append(module)
        if len(found) > 1:
            twice.append(f"{module}: {found}")
    assert not unplaced, f"modules in no layer (add each to [tool.importlinter] in pyproject.toml): {unplaced}"
    assert not twice, f"modules in two layers: {twice}"


def test_the_layer_contract_holds() -> None:
    """`lint-imports` (import-linter), as .ci/run runs it: the layer order, the leaderboard beside the engine, no
    torch in core, records or the leaderboard (through any chain of imports)."""
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"  # the lint-imports script
    run = subprocess.run([sys.executable, "-c", code, "--no-logo"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**_env(), "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]


def test_no_import_cycle(graph: grimp.ImportGraph) -> None:
    """No two modules import each other, directly or around a circle (imports inside functions and under
    TYPE_CHECKING included): the strongly connected components of the import graph are single modules."""
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    edges = [(index[m], index[t]) for m in modules for t in graph.find_modules_directly_imported_by(m)]
    rows, cols = zip(*edges) if edges else ((), ())
    matrix = csr_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(modules), len(modules)))
    _, label = connected_components(matrix, directed=True, connection="strong")
    circles = []
    for component in sorted({lab for lab in label if (label == lab).sum() > 1}):
        members = [m for m in modules if label[index[m]] == component]
        lines = [f"  {m} -> {t} (line {', '.join(str(d['line_number']) for d in details)})"
                 for m in members for t in sorted(graph.find_modules_directly_imported_by(m)) if t in members
                 for details in [graph.get_import_details(importer=m, imported=t)]]
        circles.append(f"{len(members)} modules import each other around a circle:\n" + "\n".join(lines))
    assert not circles, "\n".join(circles)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_core_records_and_leaderboard_import_without_torch_or_sklearn() -> None:
    """Every module of core, records and the leaderboard (metrics.py aside: it is scikit-learn's wrapper) imports
    in a Python where torch, torchvision, timm, peft and scikit-learn cannot be imported: the transitive check, run.
    ``import medft_bench.leaderboard`` and everything in it works there."""
    layers = _layers()
    top = [e for layer in layers[-3:] for e in layer]  # leaderboard, records, core
    code = textwrap.dedent(f"""
        import importlib, importlib.abc, pkgutil, sys
        ABSENT = {ABSENT!r}
        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in ABSENT:
                    raise ImportError("blocked for this test: " + name)
        sys.meta_path.insert(0, Absent())
        import medft_bench.leaderboard
        names = []
        for entry in {[e for e in top if e != NEEDS_SKLEARN]!r}:
            module = importlib.import_module(entry)
            names.append(entry)
            if hasattr(module, "__path__"):
                names += [m.name for m in pkgutil.walk_packages(module.__path__, entry + ".")]
        for name in names:
            importlib.import_module(name)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ABSENT)
        assert not loaded, loaded
        print(len(names), "modules")
    """)
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**_env(), "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    assert int(run.stdout.split()[0]) > 50
