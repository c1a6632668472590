"""Running a grid on a cluster engine: Ray (``medft-bench[ray]``) or Slurm through submitit
(``medft-bench[slurm]``). Both are optional: nothing here imports them until a grid is run on them.

    python -m medft_bench grid --tier smoke --ray-address local
    python -m medft_bench grid --tier standard --ray-address auto
    python -m medft_bench grid --tier standard --slurm --slurm-partition gpu --slurm-tasks 64

Each engine is an :class:`~medft_bench.cluster.engine.Engine` (``engine.py``: the protocol, the engines' options,
a Ray run's summary); ``plan.py`` plans the grid into :class:`~medft_bench.cluster.plan.Task` s (a cell, or a
trial of a tuned cell); ``worker.py`` is what a task runs on a worker; ``ray_engine.py`` and ``slurm.py`` the
engines. See docs/cluster.md.
"""
