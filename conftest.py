"""The benchmark suite's pytest plugin, for every pytest session in this repository (``pytest benchmarks ...``
from the root or from ``benchmarks/``, and the tests that run the suite)."""

from importlib.metadata import entry_points

# An environment installed before the plug-in left its pytest11 entry point (pip install -e . of an older
# checkout) has loaded it already: loading it again would fail. Re-running `pip install -e .` removes it.
_STALE_ENTRY_POINT = any(ep.value == "medft_bench.pytest_plugin" for ep in entry_points(group="pytest11"))
pytest_plugins = [] if _STALE_ENTRY_POINT else ["medft_bench.pytest_plugin"]
