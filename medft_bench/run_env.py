"""The run environment: every run-wide setting of one process (where the data is, the device, progress, whether to
download and recompute, the results store), built once by the front end and passed as one argument.

The pytest plugin keeps it on the pytest config (:func:`medft_bench.pytest_plugin.run_env`), the CLI builds it from
its arguments and the cluster driver ships it to each worker, which swaps in the store it sees. A new run-wide
setting is a field here, filled in :meth:`RunEnv.from_options` (from the shared option table), and read where it
matters; no signature in between changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medft_bench.results.store import ResultStore, Store

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class RunEnv:
    """What a cell needs from the run besides its configuration. ``store=None``: a cell computed in isolation (no
    record reused, no trial kept; the engine's tests). ``rerun_trials`` (default: ``rerun``): whether a tuned cell
    trains its kept trials again; False when this run has just run them as tasks of their own."""

    store: Store | None = None
    data_root: str | Path | None = None
    device: str | torch.device | None = None
    progress: bool | str | None = None
    download: bool = True
    medmnist_url: str | None = None  # a mirror of the MedMNIST files (--medmnist-url), else $MEDFT_MEDMNIST_URL, Zenodo
    rerun: bool = False
    save_model: bool = False  # keep each computed ok cell's network next to its record
    rerun_trials: bool | None = None
    folder_datasets: tuple[str, ...] = ()  # --folder-dataset options: registries are per process (cluster workers)
    threads: int | None = None  # torch CPU threads of a cluster task (its CPUs); None: torch's default

    @classmethod
    def at(cls, results_dir: str | Path, **settings: Any) -> RunEnv:
        """A run writing into ``results_dir`` through a :class:`~medft_bench.results.store.ResultStore`."""
        return cls(store=ResultStore(results_dir), **settings)

    @classmethod
    def from_options(cls, ns: Any, **overrides: Any) -> RunEnv:
        """From parsed options (an argparse namespace or pytest's ``config.option``: the same names, from
        :mod:`medft_bench.options`)."""
        settings: dict[str, Any] = {
            "data_root": ns.data_root, "device": getattr(ns, "device", None),
            "progress": getattr(ns, "progress", None), "download": not ns.no_download, "rerun": ns.rerun,
            "medmnist_url": getattr(ns, "medmnist_url", None),
            "save_model": getattr(ns, "save_model", False),
            "folder_datasets": tuple(getattr(ns, "folder_dataset", None) or ()),
            # With --trial-tasks the trials have just run as cases of their own (under --rerun too): reuse them.
            "rerun_trials": ns.rerun and not getattr(ns, "trial_tasks", False),
        }
        return cls.at(ns.results_dir, **{**settings, **overrides})

    @property
    def retrain_trials(self) -> bool:
        """Whether a tuned cell trains again the trials its store keeps."""
        return self.rerun if self.rerun_trials is None else self.rerun_trials

    def enter_process(self) -> None:
        """Make this process ready for the run's cells: a cluster task's thread count and folder datasets
        (registries are per process)."""
        from medft_bench.data.folders import register_from_option, registry

        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        for text in self.folder_datasets:
            if text.partition("=")[0] not in registry():
                register_from_option(text)
