"""``python -m medft_bench grid``: a whole grid on a cluster engine, with the pytest path's grid options.

    python -m medft_bench grid --tier smoke --ray-address local --ray-cpus 2
    python -m medft_bench grid --tier standard --ray-address auto --results-dir /shared/results
    python -m medft_bench grid --tier standard --slurm --slurm-partition gpu --slurm-tasks 64
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from medft_bench.errors import MedftError

if TYPE_CHECKING:
    from medft_bench.cluster.engine import Engine


def add_grid_arguments(g: argparse.ArgumentParser) -> None:
    """The ``grid`` subcommand's arguments: the grid options shared with pytest and ``run``, then the engines'."""
    from medft_bench.options import add_options

    add_options(g.add_argument_group("grid (the options of pytest benchmarks and of run)").add_argument, "cli")
    ray = g.add_argument_group("Ray")
    ray.add_argument("--ray-address", default=None, metavar="local|auto|ADDRESS",
                     help="local: start Ray on this machine; auto: join the cluster started with `ray start`; "
                          "or ray://HOST:PORT")
    ray.add_argument("--ray-cpus", type=int, default=None, help="CPUs of a local Ray instance (default: all)")
    ray.add_argument("--cpus-per-cell", type=float, default=None,
                     help="CPUs each cell declares (default: 4 on a GPU tier, else 1)")
    ray.add_argument("--gpus-per-cell", type=float, default=None,
                     help="GPUs each cell declares (default: 1 on a gpu tier, 0 otherwise or with --allow-cpu)")
    ray.add_argument("--max-retries", type=int, default=2,
                     help="times a cell whose worker died is submitted again (default 2)")
    ray.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="time limit of the whole run: cells still running are cancelled (default: none)")
    slurm = g.add_argument_group("Slurm (submitit)")
    slurm.add_argument("--slurm", action="store_true", help="submit the grid as a Slurm job array")
    slurm.add_argument("--slurm-tasks", type=int, default=None,
                       help="array tasks; each runs one shard of the grid (default: one per cell)")
    slurm.add_argument("--slurm-parallel", type=int, default=None, help="array tasks running at once (%%N)")
    slurm.add_argument("--slurm-partition", default=None)
    slurm.add_argument("--slurm-gpus-per-task", type=int, default=None,
                       help="default: 1 on a gpu tier, 0 otherwise or with --allow-cpu")
    slurm.add_argument("--slurm-cpus-per-task", type=int, default=None, help="default: 4 on a GPU tier, else 1")
    slurm.add_argument("--slurm-mem-gb", type=int, default=None)
    slurm.add_argument("--slurm-time", type=int, default=240, metavar="MINUTES",
                       help="time limit per array task (default 240); a cell cut by it leaves no record")
    slurm.add_argument("--slurm-log-dir", default=None,
                       help="each task's stdout/stderr: JOBID_TASK_0_log.out/.err (default: RESULTS_DIR/.slurm)")
    slurm.add_argument("--slurm-executor", default="slurm", choices=["slurm", "local"],
                       help="local: submitit's local executor (processes on this machine, no Slurm)")
    slurm.add_argument("--slurm-wait", action="store_true", help="wait for the array and report each task")


def _gpu_tier(args: argparse.Namespace) -> bool:
    from medft_bench.tiers import get_tier

    return "gpu" in get_tier(args.tier).marks and not args.allow_cpu


def engine(args: argparse.Namespace) -> Engine:
    """The engine the arguments choose, with its options read from them (the one place that reads them)."""
    from medft_bench.cluster.engine import RayOptions, SlurmOptions

    if args.slurm:
        from medft_bench.cluster.slurm import SlurmEngine

        return SlurmEngine(SlurmOptions.from_args(args, gpu=_gpu_tier(args)))
    from medft_bench.cluster.ray_engine import RayEngine

    return RayEngine(RayOptions.from_args(args, gpu=_gpu_tier(args)))


def run_grid(args: argparse.Namespace) -> int:
    from medft_bench.options import build_cells, register_folder_datasets
    from medft_bench.run_env import RunEnv

    if (args.ray_address is None) == (not args.slurm):
        raise MedftError("choose one engine: --ray-address local|auto|ADDRESS, or --slurm "
                         "(without a cluster, run the grid with pytest: pytest benchmarks --tier ...)")
    if args.json:
        # The cells finish on workers; their records are in the results directory, not on this process's stdout.
        raise MedftError(f"grid does not print records (--json is for `python -m medft_bench run`): read them "
                         f"from {args.results_dir}/ or publish them with `python -m medft_bench.leaderboard "
                         f"{args.results_dir}`")
    register_folder_datasets(args)
    chosen = engine(args)
    _, cells = build_cells(args)
    # The device is each worker's own (auto); workers print no per-epoch progress.
    return chosen.run(cells, RunEnv.from_options(args, device=None, progress=False))
