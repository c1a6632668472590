"""``python -m medft_bench grid``: a whole grid on a cluster engine, with the pytest path's grid options.

    python -m medft_bench grid --tier smoke --ray-address local --ray-cpus 2
    python -m medft_bench grid --tier standard --ray-address auto --results-dir /shared/results
    python -m medft_bench grid --tier standard --slurm --slurm-partition gpu --slurm-tasks 64
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from medft_bench.errors import MedftError


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


def run_grid(args: argparse.Namespace) -> int:
    from medft_bench.options import build_cells, register_folder_datasets

    if (args.ray_address is None) == (not args.slurm):
        raise MedftError("choose one engine: --ray-address local|auto|ADDRESS, or --slurm "
                         "(without a cluster, run the grid with pytest: pytest benchmarks --tier ...)")
    if args.json:
        # The cells finish on workers; their records are in the results directory, not on this process's stdout.
        raise MedftError(f"grid does not print records (--json is for `python -m medft_bench run`): read them "
                         f"from {args.results_dir}/ or publish them with `python -m medft_bench.leaderboard "
                         f"{args.results_dir}`")
    register_folder_datasets(args)
    gpu = _gpu_tier(args)
    if args.slurm:
        from medft_bench.cluster.slurm import run_grid_on_slurm

        return run_grid_on_slurm(args, gpu=gpu)
    from medft_bench.cluster.ray_engine import RayOptions, run_grid_on_ray
    from medft_bench.run_env import RunEnv

    _, cells = build_cells(args)
    opts = RayOptions(address=args.ray_address, num_cpus=args.ray_cpus,
                      cpus_per_cell=args.cpus_per_cell if args.cpus_per_cell is not None else (4.0 if gpu else 1.0),
                      gpus_per_cell=args.gpus_per_cell if args.gpus_per_cell is not None else (1.0 if gpu else 0.0),
                      max_retries=args.max_retries, timeout_s=args.timeout)
    if opts.max_retries < 0 or opts.cpus_per_cell < 0 or opts.gpus_per_cell < 0:
        raise MedftError("--max-retries, --cpus-per-cell and --gpus-per-cell cannot be negative")
    # The device is each worker's own (auto); workers print no per-epoch progress.
    summary = run_grid_on_ray(cells, RunEnv.from_options(args, device=None, progress=False), opts)
    return report(summary)


def report(summary: Any) -> int:
    """The run's end: failures with their reasons, retries, cancelled cells; the exit code."""
    out = sys.stderr
    for cfg, why in summary.skipped:  # as every front end reports a skipped cell: not a failure
        print(f"skipped: {cfg.cell_id}: {why[:300]}", file=out)
    for cfg, attempt, why in summary.retries:
        print(f"retried: {cfg.cell_id} (worker lost on attempt {attempt}: {why[:160]})", file=out)
    for cfg, lr, attempt, why in summary.trial_retries:
        print(f"retried: {cfg.cell_id} lr={lr:g} (a trial; worker lost on attempt {attempt}: {why[:160]})",
              file=out)
    for cfg, lr, why in summary.trials_not_kept:
        print(f"trial not kept: {cfg.cell_id} lr={lr:g}: {why[:200]} (its cell ran it)", file=out)
    for cfg, why in summary.failed:
        print(f"failed: {cfg.cell_id}: {why[:300]}", file=out)
    if summary.cancelled:
        print(f"not finished: {len(summary.cancelled)} cells (cancelled"
              f"{' at the time limit' if summary.timed_out else ''}); run the same command again to resume",
              file=out)
    if summary.overhead_s:
        import statistics

        o = summary.overhead_s
        trials = (f", trials kept: {len(summary.trials_kept)} (+{summary.trials_reused} from an earlier run)"
                  if summary.trials_kept or summary.trials_reused else "")
        print(f"records written: {len(summary.written)}{trials}; engine overhead per task (round trip minus the "
              f"task's own time): median {statistics.median(o) * 1000:.0f} ms, max {max(o) * 1000:.0f} ms (a new "
              "worker process imports torch)", file=out)
    if summary.interrupted:
        return 130
    return 0 if summary.ok else 1
