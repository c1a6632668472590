"""Measuring a cell on its device: waiting for queued work before a timer reads, and the process's peak memory.
What it measured is a :class:`~medft_bench.results.facts.Measurements` (seconds by kind, images, epochs, trainable
sizes, drift)."""

from __future__ import annotations

import resource
import sys

import torch

# The plain record of what a cell measured lives with the records (results/facts.py): the record is built
# from it and the records layer imports no torch. The engine fills it here.
from medft_bench.results.facts import Measurements as Measurements


def sync_device(device: torch.device) -> None:
    """Wait for the device's queued work, so that a host timer measures it (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


_CELL_PEAK = {"armed": False}  # a fresh high-water mark was started for the cell being computed


def reset_host_peak() -> bool:
    """Start a fresh peak of resident memory for the next cell (Linux: writing 5 to ``/proc/self/clear_refs``
    resets the process's VmHWM to its current RSS). False where the system has no such reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        _CELL_PEAK["armed"] = False
        return False
    _CELL_PEAK["armed"] = True
    return True


def host_peak() -> tuple[float, str]:
    """Peak resident memory in MB and what it covers: ``"cell"`` since :func:`reset_host_peak` (VmHWM; the
    memory the process already held when the cell began is included), else ``"process"`` (ru_maxrss: the
    process's peak so far, which only grows with run order). A reset serves one reading."""
    if _CELL_PEAK["armed"]:
        _CELL_PEAK["armed"] = False
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024, "cell"
        except (OSError, ValueError, IndexError):
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return (rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024), "process"
