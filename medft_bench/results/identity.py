"""A cell's hashes under earlier identity versions: how a record written before the current identity is found.

A cell's identity (``CellConfig.identity``) lists every field that affects its result, each always present;
``config.IDENTITY_VERSION`` is bumped when a setting is appended (``config.ADDED_FIELDS``). A record keeps the
hash it was written under, in its file name and its ``config_hash``, and is never rewritten. To find it, the
store also looks under the cell's earlier hashes (:func:`earlier_hashes`): the cell's identity as each earlier
version wrote it. A cell has an earlier version's hash only when every setting added since holds the value
every cell had before it existed; otherwise no record of that version can be its result.

Version 1 (records written until the explicit list, schema v3 and before) hashed the whole configuration less
the settings that did not exist yet, deleted under conditions; :func:`legacy_v1` keeps those rules, frozen:
history, never extended (a later setting is an ``ADDED_FIELDS`` entry, which excludes it from here).
"""

from __future__ import annotations

import copy
from typing import Any

from medft_bench import config
from medft_bench.config import CellConfig, identity_hash, identity_value


def legacy_v1(identity: dict[str, Any]) -> dict[str, Any]:
    """Identity version 1 from version 2's fields (``identity`` as version 2 writes it). Frozen."""
    d = copy.deepcopy(identity)
    del d["identity_version"]
    train = d["train"]
    if not train["input_size"]:
        del train["input_size"]  # cells keep the hashes they had before input sizes existed
    if not train["max_train_samples"] or train["subset_seed"] == "0":
        del train["subset_seed"]  # uncapped cells and the old fixed draw keep their hashes
    if d["weights"] != "random":
        del train["random_calibration"]  # pretrained cells keep their hashes: the setting does not apply
    if not d["data_id"]:
        del d["data_id"]  # synthetic cells keep the hashes they had before data identities existed
    if d["precision"] in ("", "fp32"):
        del d["precision"]  # fp32 cells keep the hashes they had before precisions were resolved
    if d["protocol"] == "study" and not d["lr_grid"]:
        del d["protocol"], d["lr_grid"]  # study cells keep the hashes they had before protocols existed
    return d


def identity_at(cfg: CellConfig, version: int) -> dict[str, Any] | None:
    """``cfg``'s identity as identity version ``version`` wrote it, or None where no cell of that version had
    this configuration (a setting added since holds another value than every cell had before it)."""
    if not 1 <= version <= config.IDENTITY_VERSION:
        raise ValueError(f"identity version {version}: this medft-bench knows 1 to {config.IDENTITY_VERSION}")
    identity = cfg.identity()
    for name, since, before in config.ADDED_FIELDS:
        if since <= version:
            continue
        if identity_value(cfg, name) != before:
            return None
        if name.startswith("train."):
            del identity["train"][name[len("train."):]]
        else:
            del identity[name]
    if version == 1:
        return legacy_v1({**identity, "identity_version": 2})
    identity["identity_version"] = version
    return identity


def earlier_hashes(cfg: CellConfig) -> dict[int, str]:
    """The cell's hash under each earlier identity version where it has one, newest first: where the store looks
    for its record after ``cfg.config_hash``."""
    out = {}
    for version in range(config.IDENTITY_VERSION - 1, 0, -1):
        identity = identity_at(cfg, version)
        if identity is not None:
            out[version] = identity_hash(identity)
    return out


def cell_hashes(cfg: CellConfig) -> tuple[str, ...]:
    """Every hash a record of this cell may be stored under: the current one first, then the earlier ones."""
    return (cfg.config_hash, *earlier_hashes(cfg).values())
