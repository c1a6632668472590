"""One cell end to end: records, what FT and LP change, determinism, divergence, learning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from medft_bench.errors import MedftError
from medft_bench.results.identity import earlier_hashes, identity_at
from medft_bench.results.record import validate
from medft_bench.run_env import RunEnv
from medft_bench.runner import compute_cell
from medft_bench.strategies import EpochPlan, Strategy, register_strategy
from medft_bench.strategies import registry as strategy_registry
from medft_bench.training import engine, tuning
from medft_bench.training.engine import build_context
from tests.helpers import tiny_cell


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _run_keeping_model(cfg, monkeypatch):
    """compute_cell, also returning the model before and after training."""
    seen = {}
    real = engine.build_context

    def spy(*a, **kw):
        ctx, strategy = real(*a, **kw)
        seen["ctx"], seen["before"] = ctx, _snapshot(ctx.model)
        return ctx, strategy

    monkeypatch.setattr(tuning, "build_context", spy)  # the one setup of either protocol's sweep
    result = compute_cell(cfg, RunEnv(progress=False))
    return result, seen["ctx"], seen["before"], _snapshot(seen["ctx"].model)


@pytest.mark.parametrize("backbone", ["resnet50", "densenet121", "vgg19"])
def test_ft_and_lp_on_study_backbones(backbone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lp, ctx, before, after = _run_keeping_model(tiny_cell(backbone, "lp"), monkeypatch)
    validate(lp.record)
    assert lp.record["status"] == "ok"
    head = set(ctx.head_names)
    for k in before:
        if k not in head:  # backbone weights and BatchNorm statistics untouched, bit for bit
            assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in head)
    assert lp.record["costs"]["trainable_params"] == sum(ctx.named_params()[n].numel() for n in head)
    assert lp.record["epochs"][0]["converged"] and lp.record["drift"] == {"lp": 0.0}

    ft, ctx, before, after = _run_keeping_model(tiny_cell(backbone, "ft"), monkeypatch)
    validate(ft.record)
    assert ft.record["status"] == "ok"
    changed = [k for k in before if k not in set(ctx.head_names) and not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2
    assert ft.record["costs"]["trainable_params"] == ft.record["costs"]["total_params"]
    assert ft.record["drift"]["train"] > 0 and ft.record["head"]["init"] == "scaled"


def test_record_contents() -> None:
    rec = compute_cell(tiny_cell("resnet18", "lp", epochs=2, params={"solver": "adam"}), RunEnv(progress=False)).record
    assert rec["cell"] == {"tier": "unit", "dataset": "pneumoniamnist", "img_size": 32, "backbone": "resnet18",
                           "strategy": "lp", "seed": 0, "protocol": "study"}
    assert rec["data"]["synthetic"] is True and rec["data"]["splits"] == {"train": 32, "val": 16, "test": 16}
    assert rec["weights"]["source"] == "random" and set(rec["weights"]) == {"source", "calibration"}
    assert rec["weights"]["calibration"]["batches"] == 2  # random weights: BatchNorm statistics from training images
    assert rec["config"]["preprocess"]["target_size"] == 32
    assert rec["strategy"]["norm_modes"] == ["backbone_eval"]
    assert rec["costs"]["epochs_run"] == 2 and len(rec["epochs"]) == 2
    assert rec["metrics"]["majority"]["acc"] >= 0.5
    assert set(rec["environment"]["packages"]) >= {"torch", "timm", "medmnist"}
    assert rec["config_hash"] == tiny_cell("resnet18", "lp", epochs=2, params={"solver": "adam"}).config_hash



@pytest.mark.parametrize("strategy", ["auto_rgn", "auto_snr", "lp", "knn"])
def test_probes_solves_and_votes_count_as_training(strategy: str) -> None:
    rec = compute_cell(tiny_cell("resnet18", strategy, epochs=1), RunEnv(progress=False)).record
    costs = rec["costs"]
    seconds = costs["feature_cache"]["seconds"]  # rounded to 1e-4 s in the record: compare to that
    head_init_s = rec["head"]["seconds"]
    if strategy in ("auto_rgn", "auto_snr"):  # the gradient probes: more than the head's one forward pass
        assert costs["probe_s"] > head_init_s
    elif strategy == "lp":  # the solve is fit_s; the features it needed are extraction, not fit
        assert costs["feature_extraction_s"] == pytest.approx(seconds["train"] + seconds["val"], abs=2e-4)
        assert costs["fit_s"] >= rec["epochs"][0]["seconds"] > 0
    else:  # the vote is training; the features of the evaluated splits are evaluation
        assert costs["feature_extraction_s"] == pytest.approx(seconds["train"], abs=2e-4)
        assert costs["eval_s"] == pytest.approx(seconds["val"] + seconds["test"], abs=2e-4)
        assert costs["fit_s"] > 0
    parts = ("feature_extraction_s", "probe_s", "fit_s", "reused_train_s")
    assert costs["train_s"] > sum(costs[p] for p in parts) - 1e-9


def test_same_seed_same_metrics_on_cpu() -> None:
    a = compute_cell(tiny_cell("resnet18", "ft", epochs=2), RunEnv(progress=False)).record
    b = compute_cell(tiny_cell("resnet18", "ft", epochs=2), RunEnv(progress=False)).record
    assert a["metrics"] == b["metrics"]
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    c = compute_cell(tiny_cell("resnet18", "ft", epochs=2, seed=1), RunEnv(progress=False)).record
    assert [e["train_loss"] for e in a["epochs"]] != [e["train_loss"] for e in c["epochs"]]


class _Explodes(Strategy):
    name = "test_explodes"
    defaults = {}

    def plan(self, ctx, stage, epoch):
        return EpochPlan(trainable=frozenset(ctx.head_names))

    def regularizer(self, ctx):
        return torch.tensor(float("nan"))


def test_nan_loss_is_recorded_as_diverged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(strategy_registry, "_REGISTRY", dict(strategy_registry._REGISTRY))
    register_strategy(_Explodes)
    rec = compute_cell(tiny_cell("resnet18", "test_explodes", epochs=3), RunEnv(progress=False)).record
    validate(rec)
    assert rec["status"] == "diverged" and rec["diverged_epoch"] == 0
    assert rec["metrics"] is None and "non-finite" in rec["error"]


def test_early_stopping_restores_best_checkpoint() -> None:
    rec = compute_cell(tiny_cell("resnet18", "lp", epochs=6, patience=1, lr=0.5, params={"solver": "adam"}),
                   RunEnv(progress=False)).record
    vals = [e["val"]["balanced_acc"] for e in rec["epochs"]]
    best = rec["costs"]["best_epoch"]
    assert vals[best] == max(vals)
    assert rec["metrics"]["val"]["balanced_acc"] == pytest.approx(vals[best])
    assert len(vals) < 6 or all(vals[i] <= vals[i - 1] for i in range(1, 2)) or len(vals) == 6


def test_selection_breaks_ties_by_auc() -> None:
    from medft_bench.metrics import selection_key

    flat_bad = {"balanced_acc": 0.5, "auc": 0.08}  # one class predicted, ranking inverted
    flat_good = {"balanced_acc": 0.5, "auc": 0.92}  # one class predicted, ranking right
    assert selection_key(flat_good, "balanced_acc") > selection_key(flat_bad, "balanced_acc")
    assert selection_key({"balanced_acc": 0.51, "auc": 0.1}, "balanced_acc") > selection_key(flat_good, "balanced_acc")
    by_auc = [selection_key({"auc": 0.7, "balanced_acc": b}, "auc") for b in (0.6, 0.5)]
    assert by_auc[0] > by_auc[1]
    assert selection_key({"balanced_acc": 0.5, "auc": None}, "balanced_acc") == (0.5, float("-inf"))
    assert selection_key({"balanced_acc": float("nan")}, "balanced_acc")[0] == float("-inf")


def test_selected_epoch_is_the_best_by_the_selection_key() -> None:
    from medft_bench.metrics import selection_key

    rec = compute_cell(tiny_cell("resnet18", "lp", epochs=4, patience=0, lr=0.5, params={"solver": "adam"}),
                   RunEnv(progress=False)).record
    keys = [selection_key(e["val"], rec["metrics"]["monitor"]) for e in rec["epochs"]]
    best = rec["costs"]["best_epoch"]
    assert keys[best] == max(keys) and best == keys.index(max(keys))  # the first of equal keys
    assert rec["metrics"]["val"]["auc"] == pytest.approx(rec["epochs"][best]["val"]["auc"])


def test_ft_beats_chance_on_learnable_synthetic_data() -> None:
    cfg = tiny_cell("resnet18", "ft", splits=(("train", 256), ("val", 64), ("test", 128)), epochs=4, batch_size=32)
    rec = compute_cell(cfg, RunEnv(progress=False)).record
    assert rec["metrics"]["test"]["balanced_acc"] > 0.7, rec["metrics"]["test"]


def test_build_context_resizes_to_backbone_minimum() -> None:
    ctx, _ = build_context(tiny_cell("densenet121", "ft"))
    assert ctx.preprocess.target_size == 32
    x = ctx.to_input(ctx.data.train.images[:2])
    assert x.shape == (2, 3, 32, 32)


def test_a_changed_default_or_version_is_never_served_an_old_record(tmp_path, monkeypatch) -> None:
    from medft_bench.runner import run_or_reuse
    from medft_bench.strategies.knn import KNNProbe

    cell = tiny_cell("resnet18", "knn")
    first = run_or_reuse(cell, RunEnv.at(tmp_path, progress=False))
    assert not first.reused and run_or_reuse(cell, RunEnv.at(tmp_path, progress=False)).reused
    monkeypatch.setattr(KNNProbe, "defaults", {**KNNProbe.defaults, "k": 5})
    changed = run_or_reuse(cell, RunEnv.at(tmp_path, progress=False))
    assert not changed.reused and changed.record["config_hash"] != first.record["config_hash"]
    assert changed.record["strategy"]["hparams"]["k"] == 5
    monkeypatch.setattr(KNNProbe, "version", KNNProbe.version + 1)
    assert not run_or_reuse(cell, RunEnv.at(tmp_path, progress=False)).reused


def test_the_effective_precision_is_part_of_the_hash() -> None:
    """amp="auto" trains in bf16 on CUDA and fp32 on the CPU: the two runs of one cell are two configurations (and
    a CPU cell keeps the hash it had before precisions were resolved)."""
    from dataclasses import replace

    from medft_bench.config import TrainSettings
    from medft_bench.runner import with_precision

    cell = tiny_cell("resnet18", "ft")
    cpu, gpu = with_precision(cell, "cpu"), with_precision(cell, "cuda")
    assert (cpu.precision, gpu.precision) == ("fp32", "bf16")
    assert cpu.config_hash == cell.config_hash != gpu.config_hash
    assert earlier_hashes(cpu)[1] == earlier_hashes(cell)[1] != earlier_hashes(gpu)[1]  # records of identity v1
    forced = replace(cell, train=replace(cell.train, amp="bf16"))
    assert with_precision(forced, "cpu").config_hash == with_precision(forced, "cuda").config_hash
    assert with_precision(replace(cell, train=TrainSettings(amp="off")), "cuda").precision == "fp32"
    with pytest.raises(MedftError, match="resolved for bf16"):  # filed under bf16, it may not train in fp32
        build_context(gpu, RunEnv(device="cpu"))


def test_a_failed_rerun_keeps_the_ok_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from medft_bench.results.store import ATTEMPT_SUFFIX, ResultStore, load_records
    from medft_bench.runner import run_or_reuse, with_data_id
    from medft_bench.training import engine

    cfg = tiny_cell("resnet18", "ft")
    ok = run_or_reuse(cfg, RunEnv.at(tmp_path))
    assert ok.record["status"] == "ok"
    kept = {p.name: p.read_bytes() for p in ok.path.parent.rglob("*") if p.is_file()}

    def out_of_memory(*args: Any, **kwargs: Any) -> float:
        raise RuntimeError("DefaultCPUAllocator: not enough memory")

    monkeypatch.setattr(engine.Trainer, "train_epoch", out_of_memory)
    again = run_or_reuse(cfg, RunEnv.at(tmp_path, rerun=True))
    assert again.record["status"] == "failed" and "not enough memory" in again.record["error"]
    assert again.path == ResultStore(tmp_path).attempt_path_for(with_data_id(cfg))
    assert again.path.name.endswith(ATTEMPT_SUFFIX) and again.path.is_file()
    assert {p.name: p.read_bytes() for p in ok.path.parent.rglob("*") if p.is_file() and p != again.path} == kept
    records, problems = load_records([tmp_path])
    assert [r["status"] for r in records] == ["ok"] and not problems  # the attempt is not a record
    assert run_or_reuse(cfg, RunEnv.at(tmp_path)).reused  # and the ok record still serves


def test_each_seed_of_a_capped_cell_draws_its_own_training_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every source of noise: a capped cell's seed draws its own subset (recorded), the draw is part of the cell's
    identity, and nothing keyed on the training split (frozen features, LP's reused head) crosses subsets."""
    from dataclasses import replace

    from medft_bench.strategies.probed_head import ProbedHead
    from medft_bench.training.features import FeatureCache

    monkeypatch.setenv("MEDFT_FEATURE_CACHE", "memory")
    capped = [tiny_cell(seed=s, max_train_samples=24) for s in (0, 1)]
    ctxs = [build_context(cfg, RunEnv(device="cpu"))[0] for cfg in capped]
    subsets = [ctx.data.train_subset for ctx in ctxs]
    assert [s["seed"] for s in subsets] == [0, 1] and [s["n"] for s in subsets] == [24, 24]
    assert subsets[0]["indices_sha256"] != subsets[1]["indices_sha256"]
    assert not torch.equal(ctxs[0].data.train.images, ctxs[1].data.train.images)
    # The frozen-feature cache's key names the rows, so the two seeds' training features are never shared.
    ctxs[0].data.identity["md5"] = ctxs[1].data.identity["md5"] = "0" * 32
    keys = [FeatureCache(ctx, mode="disk").key("train") for ctx in ctxs]
    assert keys[0]["rows"] != keys[1]["rows"]
    assert "rows" not in FeatureCache(ctxs[0], mode="disk").key("val")  # the whole split: keys as before
    # LP-FT and Auto-SNR reuse the LP cell of their own seed and subset.
    lp = ProbedHead().lp_cell(capped[1].with_strategy("lp_ft"))
    assert lp is not None and lp.subset_seed == 1 and lp.config_hash == capped[1].with_strategy("lp").config_hash

    # The fixed draw of old capped cells is an explicit setting: their old records are still found, same images.
    fixed = [replace(cfg, train=replace(cfg.train, subset_seed="0")) for cfg in capped]
    assert fixed[0].config_hash != capped[0].config_hash and fixed[1].config_hash != capped[1].config_hash
    assert "subset_seed" not in identity_at(fixed[0], 1)["train"]  # identity v1: records of the fixed draw
    subsets = [build_context(cfg, RunEnv(device="cpu"))[0].data.train_subset for cfg in fixed]
    assert subsets[0] == subsets[1] and subsets[0]["seed"] == 0
    uncapped = tiny_cell(seed=1)
    assert "subset_seed" not in identity_at(uncapped, 1)["train"] and uncapped.identity()["train"]["subset_seed"]
    assert build_context(uncapped, RunEnv(device="cpu"))[0].data.train_subset is None
    with pytest.raises(MedftError, match="subset_seed"):
        from medft_bench.config import check_numbers

        check_numbers(replace(capped[0], train=replace(capped[0].train, subset_seed="seven")))


def test_two_thread_counts_never_share_a_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 43.1: a cell trains at its settings' ``threads`` whatever the process has (OMP_NUM_THREADS, a Ray or
    Slurm task's CPUs), the record says so, and another count is another cell, never the first one's record."""
    from dataclasses import replace

    from medft_bench.runner import run_or_reuse

    seen: list[int] = []
    train_epoch = engine.Trainer.train_epoch

    def spy(self, *args):  # the count the epoch trains at
        seen.append(torch.get_num_threads())
        return train_epoch(self, *args)

    monkeypatch.setattr(engine.Trainer, "train_epoch", spy)
    one = tiny_cell("resnet18", "ft")
    two = replace(one, train=replace(one.train, threads=2))
    assert one.train.threads == 1 and one.config_hash != two.config_hash
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # as a process with another default (a bigger machine, OMP_NUM_THREADS=3)
        first = run_or_reuse(one, RunEnv.at(tmp_path, progress=False))
        assert set(seen) == {1} and torch.get_num_threads() == 3  # pinned in the cell, restored after
        assert first.record["environment"]["torch_threads"] == 1
        torch.set_num_threads(2)  # as a two-CPU Ray task: the same cell, reused (computed at the same count)
        assert run_or_reuse(one, RunEnv.at(tmp_path, progress=False)).reused
        seen.clear()
        other = run_or_reuse(two, RunEnv.at(tmp_path, progress=False))
        assert not other.reused and set(seen) == {2} and other.record["environment"]["torch_threads"] == 2
        assert other.record["config_hash"] != first.record["config_hash"]
    finally:
        torch.set_num_threads(before)


def test_threads_and_memory_format_options_reach_the_cells_and_their_hashes() -> None:
    """--threads, --channels-last and --eval-batch-size set the cells' settings (the old real-tier path stays one
    option away), and a different thread count or memory format is a different cell."""
    from medft_bench.__main__ import _parser
    from medft_bench.options import build_cells

    def cells(*extra: str) -> list[Any]:
        return build_cells(_parser().parse_args(["run", "--tier", "real", "--datasets", "breastmnist",
                                                 "--strategies", "ft", "--seeds", "0", *extra]))[1]

    (new,), (old,) = cells(), cells("--channels-last", "off", "--eval-batch-size", "256", "--threads", "2")
    assert (new.train.channels_last, new.train.eval_batch_size, new.train.threads) == ("on", 64, 1)
    assert (old.train.channels_last, old.train.eval_batch_size, old.train.threads) == ("off", 256, 2)
    assert len({new.config_hash, old.config_hash, cells("--threads", "2")[0].config_hash}) == 3
    with pytest.raises(MedftError, match="threads 0 is out of range"):
        from medft_bench.config import check_numbers

        check_numbers(cells("--threads", "0")[0])
