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
