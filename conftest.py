"""The benchmark suite's pytest plugin, for every pytest session in this repository (``pytest benchmarks ...``
from the root or from ``benchmarks/``, and the tests that run the suite)."""

pytest_plugins = ["medft_bench.pytest_plugin"]
