"""Shared helpers for the performance benchmarks in this folder (not a test module: pytest never collects it).

Every benchmark measures a ratio against a baseline in the same process, with both sides interleaved
(``A B A B ...``) and repeated, and reports the median ratio: on a shared machine the absolute numbers
drift by tens of percent between runs, the ratio of neighbours much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent.parent


def setup_env(cache_dir: str | None = None, threads: int = 0, thp: bool = True) -> Path:
    """Offline, with generated data and feature caches in ``cache_dir`` (a fresh temporary folder by default);
    ``threads`` > 0 sets torch's intra-op threads; ``thp`` backs large CPU tensors with transparent huge pages
    (``THP_MEM_ALLOC_ENABLE``: a fresh 38 MB batch otherwise costs thousands of page faults). Both sides of
    every comparison run in this one process, under the same settings."""
    if thp:
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # read by torch at its first large allocation
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MEDFT_OFFLINE", "1")
    if cache_dir:
        root = Path(cache_dir)
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="medft-perf-"))
    os.environ["MEDFT_CACHE_DIR"] = str(root)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return root


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--repeats", type=int, default=3, help="interleaved repetitions (median reported)")
    p.add_argument("--cache-dir", default=None, help="MEDFT_CACHE_DIR (default: a fresh temporary folder)")
    p.add_argument("--max-load", type=float, default=2.5,
                   help="wait (up to --wait-s) for the 1-minute load average to drop below this before measuring")
    p.add_argument("--wait-s", type=float, default=0.0, help="how long to wait for a low load (default: not at all)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch intra-op threads (default: torch's choice); 1 avoids OpenMP stalls on a busy machine")
    p.add_argument("--no-thp", dest="thp", action="store_false",
                   help="do not set THP_MEM_ALLOC_ENABLE=1 (transparent huge pages for large CPU tensors)")
    p.add_argument("--out", default=None, help="JSON output (default: benchmarks/perf/results/<name>.json)")
    return p


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def wait_for_low_load(max_load: float, wait_s: float) -> float:
    deadline = time.time() + wait_s
    while load() > max_load and time.time() < deadline:
        time.sleep(10)
    return load()


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(), "load_average_1min": round(load(), 2),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda_version"] = torch.version.cuda
    for pkg in ("timm", "medmnist", "torchvision"):
        try:
            info[pkg] = __import__(pkg).__version__
        except Exception:  # an optional package: its absence is recorded, not fatal
            info[pkg] = None
    return info


def interleaved(sides: dict[str, Callable[[int], dict[str, Any]]], repeats: int,
                log: Callable[[str], None] = print) -> dict[str, list[dict[str, Any]]]:
    """Run every side once per repeat, in order, ``repeats`` times; ``fn(repeat)`` returns its measurements."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in sides}
    for r in range(repeats):
        for name, fn in sides.items():
            res = fn(r)
            res["load_1min"] = round(load(), 2)
            out[name].append(res)
            log(f"  [{r + 1}/{repeats}] {name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in res.items()
                                                              if not isinstance(v, (dict, list))))
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratios(num: list[dict[str, Any]], den: list[dict[str, Any]], key: str) -> list[float]:
    """Per-repeat ratios num[key] / den[key] (neighbours in time, so load drifts cancel best)."""
    return [a[key] / b[key] for a, b in zip(num, den)]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table(rows: list[Sequence[Any]], headers: Sequence[str]) -> str:
    from tabulate import tabulate

    return tabulate([[_fmt(c) for c in r] for r in rows], headers=headers, tablefmt="github")


def write(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "datetime": datetime.now(timezone.utc).isoformat(),
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine_info(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"
