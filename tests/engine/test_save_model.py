"""``--save-model``: a run-wide setting (``RunEnv.save_model``) that keeps each computed ok cell's fine-tuned network
next to its record."""

from __future__ import annotations

from pathlib import Path

import torch

from medft_bench.results.store import ResultStore
from medft_bench.run_env import RunEnv
from medft_bench.runner import Kind, attempt
from tests.helpers import tiny_cell


def test_the_saved_network_is_the_kept_model_and_a_later_record_without_one_removes_it(tmp_path: Path) -> None:
    from medft_bench.models.factory import create_backbone

    cfg = tiny_cell("resnet18", "ft")
    out = attempt(cfg, RunEnv.at(tmp_path, progress=False, save_model=True))
    assert out.kind is Kind.COMPUTED, out.message
    store = ResultStore(tmp_path)
    saved = torch.load(store.model_path_for(cfg), map_location="cpu", weights_only=True)
    network = create_backbone("resnet18", 2, "random").model
    network.load_state_dict(saved)  # strict: every tensor of the architecture, nothing else
    head = torch.load(store.head_path_for(cfg), map_location="cpu", weights_only=True)
    for name, value in head.items():  # the network's head is the kept head (the one LP-FT would reuse)
        assert torch.equal(saved[f"fc.{name}"], value), name
    start = create_backbone("resnet18", 2, "random").model.state_dict()
    assert not torch.equal(saved["conv1.weight"], start["conv1.weight"])  # fine-tuned, not the starting point

    # Recomputed without the setting: the file belonged to the earlier computation, so it goes.
    again = attempt(cfg, RunEnv.at(tmp_path, progress=False, rerun=True))
    assert again.kind is Kind.COMPUTED and not store.model_path_for(cfg).exists()
    assert store.head_path_for(cfg).exists()


def test_the_option_reaches_the_run_environment_on_every_front_end() -> None:
    from medft_bench.__main__ import _parser

    args = _parser().parse_args(["run", "--save-model"])
    assert RunEnv.from_options(args).save_model is True
    assert RunEnv.from_options(_parser().parse_args(["run"])).save_model is False
    grid = _parser().parse_args(["grid", "--save-model", "--ray-address", "local"])
    assert RunEnv.from_options(grid).save_model is True


def test_a_cluster_workers_network_is_written_by_its_driver_and_an_attempt_beside_an_ok_record_keeps_it(
        tmp_path: Path) -> None:
    import io

    from medft_bench.cluster.engine import GridSummary, RayOptions
    from medft_bench.cluster.plan import Job, Task
    from medft_bench.cluster.progress import Progress
    from medft_bench.cluster.ray_engine import Driver
    from medft_bench.runner import compute_cell

    cfg = tiny_cell("resnet18", "ft")
    out = compute_cell(cfg, RunEnv(progress=False, save_model=True))  # as on a worker: computed, not written
    assert out.model_state is not None and out.path is None
    progress = Progress(total=1, engine="ray", stream=io.StringIO())
    driver = Driver([], None, RunEnv.at(tmp_path), RayOptions(), GridSummary(), progress)
    driver.finish(Job(Task(cfg)), out)
    store = ResultStore(tmp_path)
    assert driver.summary.written == [cfg] and store.model_path_for(cfg).is_file()

    failed = {**out.record, "status": "failed", "error": "RuntimeError: x", "metrics": None, "weak_result": None,
              "predictions": None}
    failed.pop("predictions")
    where = store.write(failed, cfg)  # a --rerun that failed goes beside the ok record, which keeps its network
    assert where == store.attempt_path_for(cfg) and store.model_path_for(cfg).is_file()


def test_knn_trains_no_network_and_saves_none(tmp_path: Path) -> None:
    cfg = tiny_cell("resnet18", "knn")
    out = attempt(cfg, RunEnv.at(tmp_path, progress=False, save_model=True))
    assert out.kind is Kind.COMPUTED, out.message
    assert not ResultStore(tmp_path).model_path_for(cfg).exists()
