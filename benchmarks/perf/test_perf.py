"""The performance benchmarks as pytest-benchmark cases (marker ``perf``): ``pytest benchmarks -m perf``
(collected only when ``-m`` names ``perf``, see conftest.py).

Each case runs one ``bench_*.py`` script in a fresh process (one repeat, one torch thread, small default
sizes) and stores its ratios in ``extra_info`` (``--benchmark-json`` keeps them). They report; they do
not assert timings: the targets and their verdicts are in docs/performance.md. For more repeats or
bigger sizes, run the scripts themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
QUICK = ["--repeats", "1", "--threads", "1"]
CASES = {
    "feature_cache": QUICK,
    "data_pipeline": QUICK,
    "harness_overhead": QUICK,
    "eval_cost": [*QUICK, "--strategies", "ft,lp"],
    "scale": QUICK,
    # small files so that the case stays in minutes; the sizes (12,000 vs 1,000 images at 224 px) are the
    # script's defaults
    "memory_mapped": [*QUICK, "--large", "1200", "--small", "300", "--size", "128", "--train-steps", "1",
                      "--data-images", "256", "--cleanup"],
    # real features when the bundled MedMNIST files and the Lite0 package are there, else synthetic ones; the
    # previous solver (--old) is left out: tens of seconds
    "lp_fit": [*QUICK, "--datasets", "breastmnist"],
    "strategy_cost": ["--repeats", "1", "--strategies", "ft,lp_ft"],
    "cuda_path": ["--repeats", "1"],  # bench_gpu.py (an id without "gpu": that keyword is the tiers' GPU mark)
}
SCRIPTS = {"cuda_path": "gpu"}


@pytest.mark.perf
@pytest.mark.parametrize("name", list(CASES))
def test_perf(name: str, benchmark, tmp_path: Path) -> None:
    if name == "cuda_path":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs CUDA: the GPU path (bf16, channels_last, compile) is measured on a GPU only")
    out = tmp_path / f"{name}.json"
    cmd = [sys.executable, str(HERE / f"bench_{SCRIPTS.get(name, name)}.py"), *CASES[name], "--out", str(out)]

    def run() -> None:
        subprocess.run(cmd, check=True, cwd=HERE.parent.parent)

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    result = json.loads(out.read_text())
    for key, value in result.items():
        if key not in ("runs", "machine", "results"):
            benchmark.extra_info[key] = value
    for case, value in (result.get("results") or {}).items():  # per-case summaries without the raw runs
        benchmark.extra_info[case] = {k: v for k, v in value.items() if k != "runs"}
