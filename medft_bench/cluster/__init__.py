"""Running a grid on a cluster engine: Ray (``medft-bench[ray]``) or Slurm through submitit
(``medft-bench[slurm]``). Both are optional: nothing here imports them until a grid is run on them.

    python -m medft_bench grid --tier smoke --ray-address local
    python -m medft_bench grid --tier standard --ray-address auto
    python -m medft_bench grid --tier standard --slurm-partition gpu --slurm-array 64

See docs/cluster.md.
"""
