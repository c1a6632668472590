"""medft-bench: which fine-tuning strategy for which backbone and medical imaging modality, at what cost."""

from typing import Any

from medft_bench import config

__version__ = "0.1.0"


def _strategy_identity(name: str) -> tuple[dict[str, Any], int]:
    # Here, at the top of the layers, the one place that wires a lower layer to a higher one (docs/architecture.md):
    # a cell's hash (config.py, records) includes its strategy's defaults and version (strategies/, above it).
    # Imported on first use, not on top: the strategies import torch, and importing the package must not.
    from medft_bench.strategies.registry import strategy_identity

    return strategy_identity(name)


config.install_strategy_lookup(_strategy_identity)
