"""pytest plugin (registered through the ``pytest11`` entry point, so its options work from the repository
root as well as from ``benchmarks/``): benchmark options, markers, GPU pinning under xdist, machine info."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("--tier", {"default": "smoke", "help": "benchmark tier: smoke (default), quick, standard, full"}),
    ("--datasets", {"default": None, "help": "comma-separated datasets (default: the tier's)"}),
    ("--backbones", {"default": None, "help": "comma-separated timm backbone names (default: the tier's)"}),
    ("--strategies", {"default": None, "help": "comma-separated strategy names (default: all registered)"}),
    ("--seeds", {"default": None, "help": "comma-separated seeds (default: the tier's)"}),
    ("--img-size", {"default": None, "help": "comma-separated image sizes of the dataset files"}),
    ("--epochs", {"default": None, "type": int, "help": "epoch budget per cell"}),
    ("--batch-size", {"default": None, "type": int, "help": "training batch size"}),
    ("--max-train-samples", {"default": None, "type": int, "help": "cap on training images (seeded subset)"}),
    ("--data-root", {"default": None, "help": "folder holding MedMNIST .npz files / folder datasets"}),
    ("--weights", {"default": None, "help": "pretrained | random | a weights file or directory of weight files"}),
    ("--results-dir", {"default": "results", "help": "where cell records go (default: results/)"}),
    ("--rerun", {"action": "store_true", "default": False, "help": "recompute cells that have a record"}),
    ("--shard", {"default": None, "help": "run shard i of n of the grid, e.g. 2/4"}),
    ("--no-download", {"action": "store_true", "default": False, "help": "never download MedMNIST files"}),
    ("--allow-cpu", {"action": "store_true", "default": False, "help": "run gpu-marked tiers on the CPU"}),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("medft-bench", "medft-bench benchmark grid")
    for name, kw in OPTIONS:
        group.addoption(name, **kw)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped on CPU unless --allow-cpu)")
    config.addinivalue_line("markers", "heavy: the full tier (full-size datasets, GPU-hours)")
    config.addinivalue_line("markers", "perf: performance benchmarks (benchmarks/perf)")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            # One GPU per xdist worker: gw0 -> cuda:0, gw1 -> cuda:1, ...
            torch.cuda.set_device(int(worker[2:]) % torch.cuda.device_count())


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
