"""Records of an older layout brought to the current one (``record.SCHEMA_VERSION``), once, when they are read.

Every reader goes through :func:`medft_bench.results.store.read_record`, which upgrades and then validates, so
no reader (the view, the leaderboard, a reuse) knows an older layout. A layout change bumps ``SCHEMA_VERSION``
and adds one step here, from the version before. Upgrading changes nothing on disk: a reused record keeps its
file, and the next computation writes the current layout.

Steps touch only what they fill, and only where the record has the shape to hold it: a damaged record is left
for the schema's validator to name.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from medft_bench.results.record import SCHEMA_VERSION
from medft_bench.vocabulary import probe_cut


def _v1_to_v2(record: dict[str, Any]) -> None:
    """v2 writes what v1 left implicit: ``cell.protocol`` ("study" when absent) and ``data.modality`` ("" in records
    written before it existed: none recorded, so the view names the dataset's from MedMNIST's table)."""
    cell, data = record.get("cell"), record.get("data")
    if isinstance(cell, dict):
        cell.setdefault("protocol", "study")
    if isinstance(data, dict) and not isinstance(data.get("modality"), str):  # absent, or null as v1 allowed
        data["modality"] = ""


def _v2_to_v3(record: dict[str, Any]) -> None:
    """v3 states whether the method completed as specified (``strategy.complete``, ``incomplete_reason``),
    derived from what a v2 record holds: gradual unfreezing's ``log.complete``; Auto-RGN's and Auto-SNR's
    probe batches against the reference's 5; LP-FT's stage-2 epochs; any other strategy completed."""
    strategy = record.get("strategy")
    if not isinstance(strategy, dict):
        return
    name, log = strategy.get("name"), strategy.get("log")
    hparams = strategy.get("hparams") if isinstance(strategy.get("hparams"), dict) else {}
    reason = None
    if isinstance(log, dict) and log.get("complete") is False:
        reason = "not every block unfroze within the budget (strategy.log.complete)"
    elif name in ("auto_rgn", "auto_snr") and isinstance(hparams.get("n_batches"), int):
        reason = probe_cut(hparams["n_batches"])
    elif name == "lp_ft" and isinstance(record.get("epochs"), list) and record.get("status") == "ok" and not any(
            isinstance(e, dict) and e.get("stage") == "ft" and "epoch" in e for e in record["epochs"]):
        reason = "stage 2 (fine-tuning) did not run: the cell is its linear probe"
    strategy.setdefault("complete", reason is None)
    strategy.setdefault("incomplete_reason", reason)


def _v3_to_v4(record: dict[str, Any]) -> None:
    """v4 states the identity version of ``config_hash`` (``identity``): every record before v4 was hashed under
    identity version 1, and names no earlier hashes."""
    record.setdefault("identity", {"version": 1, "earlier_hashes": {}})


# version -> the step that brings a record of that version to the next one (every version before the current)
STEPS: dict[int, Callable[[dict[str, Any]], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def upgrade(record: Any) -> Any:
    """``record`` in the current layout (a copy of what it holds; the argument is not changed). Anything that is
    not a record of a known older version is returned as it is: the validator names what is wrong with it."""
    if not isinstance(record, dict):
        return record
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < SCHEMA_VERSION:
        return record
    out = copy.deepcopy(record)
    for v in range(version, SCHEMA_VERSION):
        STEPS[v](out)
    out["schema_version"] = SCHEMA_VERSION
    return out
