"""The test suite's own layout: no test module imports another (shared code lives in tests/helpers.py,
tests/places.py or a conftest.py fixture), so that each test file can move, run or be deleted alone."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
while TESTS.name != "tests":  # this file may sit in a lane's folder under tests/
    TESTS = TESTS.parent


def _is_test_module(dotted: str) -> bool:
    """A module name that names a test module or a conftest (``tests.unit.test_x``, ``test_x``, ``conftest``)."""
    last = dotted.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_test_modules(source: str) -> list[str]:
    """The test modules and conftests that ``source`` imports, wherever the import is written (on top, inside a
    function), or names in ``pytest_plugins``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if _is_test_module(module):
                found.append(module)
            else:  # from tests import test_x; from . import conftest
                found += [f"{module}.{a.name}".lstrip(".") for a in node.names if _is_test_module(a.name)]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytest_plugins"
                                                  for t in node.targets):
            for const in ast.walk(node.value):
                if isinstance(const, ast.Constant) and isinstance(const.value, str) and _is_test_module(const.value):
                    found.append(const.value)
    return found


def test_the_check_sees_every_form_of_import() -> None:
    source = ("import tests.test_a\nfrom tests.unit.test_b import make\nfrom test_c import x\nimport conftest\n"
              "from tests import test_d\nfrom . import conftest as c\n"
              "def f():\n    from tests.test_e import g\n"
              "pytest_plugins = ['tests.test_f']\n"
              "from tests.helpers import tiny_cell\nimport tests.places\npytest_plugins = ['tests.places']\n")
    assert sorted(imported_test_modules(source)) == ["conftest", "conftest", "test_c", "tests.test_a", "tests.test_d",
                                                     "tests.test_e", "tests.test_f", "tests.unit.test_b"]


def test_no_test_module_imports_another() -> None:
    files = sorted(TESTS.rglob("test_*.py")) + sorted(TESTS.rglob("conftest.py"))
    assert len(files) > 40
    offenders = {str(f.relative_to(TESTS)): found for f in files
                 if (found := imported_test_modules(f.read_text(encoding="utf-8")))}
    assert not offenders, f"move what they share into tests/helpers.py or a conftest.py fixture: {offenders}"
