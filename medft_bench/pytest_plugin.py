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
    ("--protocol", {"default": None, "metavar": "study|tuned",
                    "help": "study: the study's fixed learning rate; tuned: each strategy at its best learning rate "
                            "on validation (a sweep per cell). Default: the study's cells plus the tier's tuned "
                            "cells (smoke: FT and LP-FT on ResNet-50)"}),
    ("--lr-grid", {"default": None, "metavar": "LR,LR,...",
                   "help": "the tuned protocol's learning rates (default: the tier's, else each strategy's own)"}),
    ("--epochs", {"default": None, "type": int, "help": "epoch budget per cell"}),
    ("--batch-size", {"default": None, "type": int, "help": "training batch size"}),
    ("--max-train-samples", {"default": None, "type": int, "help": "cap on training images (seeded subset)"}),
    ("--data-root", {"default": None, "help": "folder holding MedMNIST .npz files / folder datasets"}),
    ("--folder-dataset", {"action": "append", "default": [], "metavar": "NAME=PATH[,key=value...]",
                          "help": "register your own image-folder or CSV-manifest dataset (repeatable), e.g. "
                                  "mine=/data/us,channels=1; then --datasets mine"}),
    ("--synthetic", {"nargs": "?", "const": "", "default": None, "metavar": "train=N,val=N,test=N",
                     "help": "generated MedMNIST-format data instead of the real files (records say synthetic): "
                             "a tier's shape without the downloads; optional split sizes"}),
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
    _register_folder_datasets(config)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            # One GPU per xdist worker: gw0 -> cuda:0, gw1 -> cuda:1, ...
            torch.cuda.set_device(int(worker[2:]) % torch.cuda.device_count())


def _register_folder_datasets(config: pytest.Config) -> None:
    """In the main process and in every xdist worker: each builds the grid itself."""
    from medft_bench.data.folders import register_from_option
    from medft_bench.errors import MedftError

    for text in config.getoption("--folder-dataset", default=None) or ():
        try:
            register_from_option(text)
        except MedftError as exc:
            raise pytest.UsageError(str(exc)) from None


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
