"""A cell's identity: an explicit, versioned field list; records written under an earlier identity version (the
published run's among them) are still found and reused, by the hash they were written under, never rewritten."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from medft_bench import config
from medft_bench.config import CellConfig, TrainSettings, identity_fields, identity_hash
from medft_bench.data.medmnist import NO_BUNDLED_ENV
from medft_bench.grid import GridOptions, build_grid
from medft_bench.results.identity import cell_hashes, earlier_hashes, identity_at
from medft_bench.results.record import SCHEMA_VERSION
from medft_bench.results.store import ResultStore, read_record
from medft_bench.results.view import RecordView
from medft_bench.run_env import RunEnv
from medft_bench.runner import resolved, run_or_reuse
from medft_bench.tiers import get_tier
from tests.helpers import make_record, tiny_cell

ORACLE = Path(__file__).resolve().parents[1] / "oracles" / "published_hashes.json"
# The published run's three groups (scripts/publish_real.sh), each as its benchmarks command selects it
PUBLISHED_GROUPS = [
    ("real", GridOptions()),
    ("real", GridOptions(strategies=["ft", "lp", "gu_last_first", "gu_first_last", "lp_ft", "l1_sp", "l2_sp",
                                     "auto_rgn", "auto_snr", "ft_eval", "knn"], seeds=[0, 1, 2, 3, 4],
                         protocol="tuned")),
    ("real_long", GridOptions()),
]


@pytest.fixture
def published_cells(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> list[CellConfig]:
    """The published run's cells as a CPU run resolves them (the bundled official files' MD5, fp32)."""
    monkeypatch.delenv(NO_BUNDLED_ENV, raising=False)  # tests/conftest.py hides them from the other tests
    env = RunEnv(device="cpu", data_root=tmp_path_factory.mktemp("no-data"))
    return [resolved(c, env) for tier, opts in PUBLISHED_GROUPS for c in build_grid(get_tier(tier), opts)]


def as_v3(record: dict[str, Any], config_hash: str) -> dict[str, Any]:
    """``record`` as schema v3 wrote it, under identity version 1: ``config_hash`` that version's, no ``identity``."""
    old = copy.deepcopy(record)
    old["schema_version"] = 3
    old["config_hash"] = config_hash
    del old["identity"]
    return old


def put(store: ResultStore, cfg: CellConfig, record: dict[str, Any], config_hash: str) -> Path:
    """A record of ``cfg`` in ``store`` under ``config_hash`` (its file name and field), as an older run left it."""
    path = store.path_for(cfg).with_name(f"{cfg.cell_id}__{config_hash}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**record, "cell_id": cfg.cell_id}, sort_keys=True))
    return path


# -- the field list ------------------------------------------------------------------------------------------


def test_every_setting_is_in_the_field_list_and_always_in_the_identity() -> None:
    """A new setting of CellConfig or TrainSettings fails here until it is appended to the list (and the version
    bumped, config.ADDED_FIELDS): the identity is never the dataclass's fields by accident."""
    names = {f.name for f in dataclasses.fields(CellConfig)} - {"train"}
    names |= {f"train.{f.name}" for f in dataclasses.fields(TrainSettings)}
    assert names | {"strategy_version"} == set(identity_fields())
    assert len(identity_fields()) == len(set(identity_fields()))
    for cell in (tiny_cell(), replace(tiny_cell(), weights="pretrained", synthetic=False, data_id="md5:" + "0" * 32,
                                      precision="bf16", protocol="tuned", lr_grid=(1e-3,))):
        identity = cell.identity()
        assert identity["identity_version"] == config.IDENTITY_VERSION == 2
        assert set(identity) - {"identity_version", "train"} | {f"train.{k}" for k in identity["train"]} \
            == set(identity_fields())
        assert cell.config_hash == identity_hash(identity)


def test_identity_version_1_is_the_old_rule_frozen() -> None:
    """Version 1's identity, rebuilt from version 2's fields, is what the deletions wrote (spot checks)."""
    cell = tiny_cell()
    v1 = identity_at(cell, 1)
    assert "identity_version" not in v1 and "data_id" not in v1 and "precision" not in v1 and "protocol" not in v1
    assert not {"input_size", "subset_seed"} & set(v1["train"]) and v1["train"]["random_calibration"] == 4
    capped = replace(cell, train=replace(cell.train, max_train_samples=8, input_size=48))
    assert identity_at(capped, 1)["train"]["subset_seed"] == "cell" and identity_at(capped, 1)["train"]["input_size"]
    assert earlier_hashes(cell) == {1: identity_hash(v1)} and cell_hashes(cell) == (cell.config_hash,
                                                                                     identity_hash(v1))
    with pytest.raises(ValueError, match="identity version 3"):
        identity_at(cell, 3)


def test_a_new_setting_changes_the_hash_of_new_cells_and_old_records_are_still_found(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A setting appended to the list (version 3) changes every cell's hash; a cell that holds the value every
    cell had before it is still found under its version-2 and version-1 hashes, a cell with another value is not."""
    @dataclass(frozen=True)
    class Later(TrainSettings):
        label_smoothing: float = 0.0

    before = tiny_cell()
    v2_hash, v1_hash = before.config_hash, earlier_hashes(before)[1]
    store = ResultStore(tmp_path)
    put(store, before, {**make_record(), "config_hash": v2_hash}, v2_hash)

    monkeypatch.setattr(config, "ADDED_FIELDS", (("train.label_smoothing", 3, 0.0),))
    monkeypatch.setattr(config, "IDENTITY_VERSION", 3)
    plain = replace(before, train=Later(**dataclasses.asdict(before.train)))
    smoothed = replace(plain, train=replace(plain.train, label_smoothing=0.1))
    assert plain.identity()["identity_version"] == 3 and plain.identity()["train"]["label_smoothing"] == 0.0
    assert len({v2_hash, plain.config_hash, smoothed.config_hash}) == 3  # new cells, new hashes
    assert earlier_hashes(plain) == {2: v2_hash, 1: v1_hash}
    assert earlier_hashes(smoothed) == {}  # no record written before the setting is its result
    assert store.lookup(plain)["config_hash"] == v2_hash and store.record_path(plain).name.endswith(
        f"__{v2_hash}.json")
    assert store.lookup(smoothed) is None


# -- records written under identity version 1 ----------------------------------------------------------------


def test_the_published_cells_keep_their_hashes(published_cells: list[CellConfig]) -> None:
    """Every cell of the published run (182 records: the quick start's 54, the tuned group, real_long) has, under
    identity version 1, the hash its published record was written under; its current hash is another."""
    published = json.loads(ORACLE.read_text())["hashes"]
    cells = published_cells
    assert sorted(c.cell_id for c in cells) == sorted(published)
    for cell in cells:
        assert earlier_hashes(cell) == {1: published[cell.cell_id]}
        assert cell.config_hash != published[cell.cell_id]


def test_every_published_record_is_found_where_it_is_stored(published_cells: list[CellConfig],
                                                            tmp_path: Path) -> None:
    """A store laid out as the published run's (a v3 record per cell, named by its v1 hash) serves each cell its
    record, without rewriting it: the upgrade step of the lookup, not a rule in ``identity``."""
    published = json.loads(ORACLE.read_text())["hashes"]
    store = ResultStore(tmp_path)
    files = {}
    for cell in published_cells:
        old = as_v3(make_record(tier=cell.tier, dataset=cell.dataset, strategy=cell.strategy, seed=cell.seed),
                    published[cell.cell_id])
        files[cell] = put(store, cell, old, published[cell.cell_id])
    before = {path: path.read_bytes() for path in files.values()}
    for cell, path in files.items():
        record = store.lookup(cell)
        assert record is not None and record["config_hash"] == published[cell.cell_id], cell.cell_id
        assert record["identity"] == {"version": 1, "earlier_hashes": {}} and store.record_path(cell) == path
    assert {path: path.read_bytes() for path in files.values()} == before


@pytest.mark.skipif(not os.environ.get("MEDFT_PUBLISHED_RESULTS"),
                    reason="MEDFT_PUBLISHED_RESULTS names no copy of the published records")
def test_the_published_records_themselves_are_reused(published_cells: list[CellConfig]) -> None:
    """With the published run's records at hand (MEDFT_PUBLISHED_RESULTS, as scripts/publish_real.sh names
    them): every cell's lookup finds its published record. Reads only; computes nothing."""
    root = Path(os.environ["MEDFT_PUBLISHED_RESULTS"])
    published = json.loads(ORACLE.read_text())["hashes"]
    store = ResultStore(root)
    for cell in published_cells:
        record = store.lookup(cell)
        assert record is not None and record["config_hash"] == published[cell.cell_id], cell.cell_id
        assert store.record_path(cell).parent.parent == root


def test_run_or_reuse_reuses_an_old_record_and_writes_new_ones_under_the_new_hash(tmp_path: Path) -> None:
    cell = resolved(tiny_cell("resnet18", "lp"), RunEnv(device="cpu"))
    v1_hash = earlier_hashes(cell)[1]
    store = ResultStore(tmp_path)
    path = put(store, cell, as_v3(make_record(tier="unit"), v1_hash), v1_hash)
    out = run_or_reuse(cell, RunEnv.at(tmp_path, device="cpu", progress=False))
    assert out.reused and out.record["config_hash"] == v1_hash and out.path == path
    # Recomputed (--rerun), the cell's record goes under its current hash; the old one stays as it was.
    again = run_or_reuse(cell, RunEnv.at(tmp_path, device="cpu", progress=False, rerun=True))
    assert not again.reused and again.path == store.path_for(cell) != path and path.is_file()
    new = read_record(again.path)
    assert new["config_hash"] == cell.config_hash
    assert new["identity"] == {"version": config.IDENTITY_VERSION, "earlier_hashes": {"1": v1_hash}}
    assert store.lookup(cell)["config_hash"] == cell.config_hash  # the current hash first
    # Matched with the old record as one configuration (compare), by the hash the new record names for it.
    assert RecordView(new).same_configuration(RecordView(read_record(path)))
    assert not RecordView(new).same_configuration(RecordView(read_record(path) | {"config_hash": "0" * 16}))


def test_a_failed_rerun_never_hides_an_old_ok_record(tmp_path: Path) -> None:
    """The old ok record stays the cell's result when a recomputation fails: the attempt goes beside it."""
    cell = resolved(tiny_cell(), RunEnv(device="cpu"))
    v1_hash = earlier_hashes(cell)[1]
    store = ResultStore(tmp_path)
    old = put(store, cell, as_v3(make_record(tier="unit"), v1_hash), v1_hash)
    failed = {**make_record(tier="unit", status="failed", primary=None, error="boom"), "cell_id": cell.cell_id,
              "config_hash": cell.config_hash}
    written = store.write(failed, cell)
    assert written == store.attempt_path_for(cell) and not store.path_for(cell).exists()
    assert store.lookup(cell)["config_hash"] == v1_hash and store.record_path(cell) == old


def test_a_schema_v3_record_reads_as_identity_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(as_v3(make_record(), "ab" * 8)))
    record = read_record(path)
    assert record["schema_version"] == SCHEMA_VERSION == 4
    assert RecordView(record).identity_version == 1 and RecordView(record).hash_at(1) == "ab" * 8
    assert RecordView(record).hash_at(2) is None
