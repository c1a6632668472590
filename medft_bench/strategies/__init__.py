"""Fine-tuning strategies: one small module per idea, all behind one registry."""

from medft_bench.strategies.base import EpochPlan, Stage, Strategy
from medft_bench.strategies.registry import create_strategy, get_strategy, register_strategy, strategy_names

__all__ = ["EpochPlan", "Stage", "Strategy", "create_strategy", "get_strategy", "register_strategy",
           "strategy_names"]
