"""The grid through Ray against the pytest path, in one run on this machine: wall-clock ratios and the
per-cell overhead Ray adds (worker start, scheduling, the record and head sent back).

Three runs of the same smoke cells, each into a fresh results directory, one torch thread per worker:
``pytest benchmarks`` (one process), ``grid --ray-address local --ray-cpus 1`` (one worker) and
``--ray-cpus 2`` (two workers). Each wall-clock is the whole command's, Ray's start included.

    python benchmarks/perf/bench_cluster.py                                   # 4 ResNet-50 cells
    python benchmarks/perf/bench_cluster.py --strategies lp,lp_ft,knn,ft,l2sp --backbones resnet50,vgg19
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return wall, out.stdout + out.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbones", default="resnet50")
    ap.add_argument("--strategies", default="lp,lp_ft,knn,ft")
    ap.add_argument("--json", default=None, help="write the numbers to this file")
    a = ap.parse_args()
    grid = ["--tier", "smoke", "--backbones", a.backbones, "--strategies", a.strategies, "--protocol", "study"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "MEDFT_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        env["MEDFT_CACHE_DIR"] = f"{tmp}/cache"
        py = sys.executable
        _run([py, "-m", "medft_bench", "list", "tiers"], env)  # warm the file cache for the imports
        n = len(a.backbones.split(",")) * len(a.strategies.split(","))
        pytest_s, _ = _run([py, "-m", "pytest", "benchmarks", *grid, "--results-dir", f"{tmp}/p", "-q",
                            "-p", "no:cacheprovider"], env)
        rays = {}
        for workers in (1, 2):
            wall, text = _run([py, "-m", "medft_bench", "grid", *grid, "--ray-address", "local", "--ray-cpus",
                               str(workers), "--cpus-per-cell", "1", "--results-dir", f"{tmp}/r{workers}"], env)
            m = re.search(r"median (\d+) ms, max (\d+) ms", text)
            rays[workers] = {"wall_s": round(wall, 1), "overhead_median_ms": int(m[1]) if m else None,
                             "overhead_max_ms": int(m[2]) if m else None}
    out = {"cells": n, "pytest_s": round(pytest_s, 1), "ray": rays,
           "ratio_ray1_vs_pytest": round(rays[1]["wall_s"] / pytest_s, 2),
           "ratio_ray2_vs_pytest": round(rays[2]["wall_s"] / pytest_s, 2)}
    print(json.dumps(out, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
