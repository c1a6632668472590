"""The one typed view of a result record, read by everything outside ``results/`` (the runner's front ends, the
CLI, the benchmarks, the leaderboard).

A :class:`RecordView` holds a record as :func:`medft_bench.results.upgrade.upgrade` leaves it (the current
layout, ``SCHEMA_VERSION``) and validated against the schema: its properties never guess at an older layout.
Fields that are optional in the schema itself (a strategy's label and variant, drift, a tuned cell's sweep)
read as None or empty when absent. No torch: the leaderboard runs without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from medft_bench.vocabulary import MODALITY

WEIGHTS_KINDS = ("pretrained", "packaged", "random", "file")


def is_unofficial_copy(data: dict[str, Any]) -> bool:
    """A record's ``data``: a MedMNIST file whose MD5 was checked and is not the official one (records written
    before the check, without ``md5_verified``, count as official)."""
    return data.get("source") == "medmnist" and not data.get("synthetic") and data.get("md5_verified") is False


def timestamp(text: str) -> float:
    """Seconds since the epoch for an ISO 8601 time (naive times are taken as UTC; unparsable: -inf)."""
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return float("-inf")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


@dataclass
class RecordView:
    """One valid record, its fields typed. ``record`` is the dict as stored (for writing and for ``compare``)."""

    record: dict[str, Any] = field(repr=False)

    # -- the cell -------------------------------------------------------------------------------------------
    @property
    def cell(self) -> dict[str, Any]:
        return self.record["cell"]

    @property
    def cell_id(self) -> str:
        return str(self.record["cell_id"])

    @property
    def config_hash(self) -> str:
        return str(self.record["config_hash"])

    @property
    def identity_version(self) -> int:
        """The identity version ``config_hash`` was computed under (1: before the explicit field list)."""
        return int(self.record["identity"]["version"])

    def hash_at(self, version: int) -> str | None:
        """The cell's hash under identity version ``version``: ``config_hash`` at its own version, an earlier
        version's as the record names it, None where it has none (a later version, or a setting added since that
        holds another value than every cell had before it existed)."""
        if version == self.identity_version:
            return self.config_hash
        return self.record["identity"]["earlier_hashes"].get(str(version))

    def same_configuration(self, other: RecordView) -> bool:
        """Whether two records are of one configuration: equal hashes under the newer identity version both
        have (a record written before the identity changed keeps its hash; a newer record names its hash then)."""
        version = min(self.identity_version, other.identity_version)
        mine = self.hash_at(version)
        return mine is not None and mine == other.hash_at(version)

    @property
    def tier(self) -> str:
        return str(self.cell["tier"])

    @property
    def dataset(self) -> str:
        return str(self.cell["dataset"])

    @property
    def img_size(self) -> int:
        return int(self.cell["img_size"])

    @property
    def backbone(self) -> str:
        return str(self.cell["backbone"])

    @property
    def seed(self) -> int:
        return int(self.cell["seed"])

    @property
    def protocol(self) -> str:
        """study or tuned."""
        return str(self.cell["protocol"])

    @property
    def strategy_name(self) -> str:
        return str(self.cell["strategy"])

    @property
    def variant(self) -> str:
        """The parameters that make this strategy's row one of its own (``strategy.variant``: surgical's block), or
        ""."""
        variant = self.record["strategy"].get("variant")
        return str(variant) if isinstance(variant, str) else ""

    @property
    def strategy(self) -> str:
        """The row's strategy key: the name, with the variant when there is one (``surgical[block=2]``)."""
        return f"{self.strategy_name}[{self.variant}]" if self.variant else self.strategy_name

    @property
    def label(self) -> str | None:
        """The label the strategy declared (``strategy.label``), with the variant; None when it declared none."""
        label = self.record["strategy"].get("label")
        if not label:
            return f"{self.strategy_name} ({self.variant})" if self.variant else None
        return f"{label} ({self.variant})" if self.variant else str(label)

    # -- the configuration ------------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def input_size(self) -> int:
        """The size the backbone was shown the images at when one was asked for (--input-size), else 0."""
        return int((self.config.get("train") or {}).get("input_size") or 0)

    @property
    def weights_kind(self) -> str:
        """pretrained | packaged | random | file (a local weights file or directory)."""
        w = self.config.get("weights")
        if isinstance(w, str) and w:
            return w if w in ("pretrained", "packaged", "random") else "file"
        source = self.record["weights"].get("source")
        return {"hub": "pretrained", "package": "packaged", "random": "random"}.get(source, "file")

    @property
    def head(self) -> dict[str, Any]:
        """How the new head started (``init``; its feature statistics when measured)."""
        return self.record.get("head") or {}

    @property
    def weights(self) -> dict[str, Any]:
        return self.record["weights"]

    # -- the data ---------------------------------------------------------------------------------------------
    @property
    def data(self) -> dict[str, Any]:
        return self.record["data"]

    @property
    def synthetic(self) -> bool:
        """Synthetic when either the configuration or the data says so."""
        return bool(self.config.get("synthetic")) or bool(self.data.get("synthetic"))

    @property
    def unofficial(self) -> bool:
        """A MedMNIST dataset read from a file whose MD5 is not the official one (a copy someone changed, or another
        release): real images, but not the dataset the published numbers are about."""
        return not self.synthetic and is_unofficial_copy(self.data)

    @property
    def task(self) -> str:
        return str(self.data["task"])

    @property
    def modality(self) -> str:
        """The recorded modality; where none was recorded (""), a MedMNIST dataset's from its table, else unknown."""
        return str(self.data["modality"]) or MODALITY.get(self.dataset, "unknown")

    @property
    def n_classes(self) -> int | None:
        n = self.data.get("n_classes")
        return int(n) if isinstance(n, int) else None

    @property
    def splits(self) -> dict[str, int]:
        """Images per split (train, val, test)."""
        return dict(self.data.get("splits") or {})

    # -- how it ended -----------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """ok | diverged | failed."""
        return str(self.record["status"])

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def error(self) -> str | None:
        return self.record.get("error")

    @property
    def diverged_epoch(self) -> int | None:
        return self.record.get("diverged_epoch")

    @property
    def weak_result(self) -> str | None:
        """Why an ok result is no better than the majority class, or None."""
        return self.record.get("weak_result")

    @property
    def metrics(self) -> dict[str, Any] | None:
        """``val`` and ``test`` metrics, ``primary``, ``monitor`` and the ``majority`` baseline; None without."""
        return self.record.get("metrics")

    @property
    def test(self) -> dict[str, Any]:
        """The test split's metrics ({} without metrics)."""
        return (self.metrics or {}).get("test") or {}

    @property
    def primary(self) -> str | None:
        """The primary metric's name, when there are metrics."""
        return (self.metrics or {}).get("primary")

    @property
    def tuning(self) -> dict[str, Any] | None:
        """A tuned cell's sweep (``grid``, ``chosen_lr``, ``trials``, ...), or None."""
        return self.record.get("tuning")

    @property
    def chosen_lr(self) -> float | None:
        """The tuned protocol's chosen learning rate; None for a study cell or one without a sweep."""
        lr = (self.tuning or {}).get("chosen_lr")
        return float(lr) if isinstance(lr, (int, float)) else None

    @property
    def grid_edge(self) -> str | None:
        """Where the chosen learning rate sits in a tuned cell's grid of three or more rates: ``"lowest"`` or
        ``"highest"`` (the best rate may lie outside the grid), else None (inside, or nothing swept)."""
        grid = sorted(float(x) for x in (self.tuning or {}).get("grid") or [])
        lr = self.chosen_lr
        if lr is None or len(grid) < 3:  # with two rates every choice is an edge: nothing to say
            return None
        return "lowest" if lr == grid[0] else "highest" if lr == grid[-1] else None

    # -- costs and the run's course ---------------------------------------------------------------------------
    @property
    def costs(self) -> dict[str, Any]:
        """Seconds, images per second, peak memory and parameter counts, by name (``docs/record.md``)."""
        return self.record["costs"]

    @property
    def best_epoch(self) -> int | None:
        """The kept checkpoint's epoch (-1: the state a stage started from), or None."""
        return self.costs.get("best_epoch")

    @property
    def epochs(self) -> list[dict[str, Any]]:
        return [e for e in self.record.get("epochs") or [] if isinstance(e, dict)]

    @property
    def stage_order(self) -> list[str]:
        """The stages in the order they ran: first appearance in ``epochs`` (a list, written in order). A JSON
        object's key order says nothing (records are written with sorted keys)."""
        order: list[str] = []
        for entry in self.epochs:
            stage = entry.get("stage")
            if isinstance(stage, str) and stage not in order:
                order.append(stage)
        return order

    def last_stage_value(self, per_stage: dict[str, Any] | None) -> Any:
        """The value of the last stage that ran among ``per_stage``'s keys (stage order from ``epochs``); None
        when the order is unknown (several stages, none in ``epochs``), never the alphabetically last key."""
        if not per_stage:
            return None
        ranked = [s for s in self.stage_order if s in per_stage]
        if ranked:
            return per_stage[ranked[-1]]
        return next(iter(per_stage.values())) if len(per_stage) == 1 else None

    @property
    def drift(self) -> float | None:
        """||theta - theta0|| / ||theta0|| of the backbone at the end (the last stage's, in the order the stages
        ran); None without drift or when the stage order cannot be told."""
        value = self.last_stage_value(self.record.get("drift"))
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def probe_converged(self) -> bool | None:
        """The linear probe's solve (an ``epochs`` entry with ``epochs: 0`` and a ``converged`` field): False when
        any solve says it did not converge, True when all say so, None without a solve (or a reused head)."""
        flags = [e["converged"] for e in self.epochs if e.get("epochs") == 0 and isinstance(e.get("converged"), bool)]
        return None if not flags else all(flags)

    @property
    def method_complete(self) -> bool:
        """The strategy ran as its reference specifies (every block unfrozen, the reference's probe batches, both
        LP-FT stages): ``strategy.complete``."""
        return bool(self.record["strategy"].get("complete", True))

    @property
    def incomplete_reason(self) -> str | None:
        """Why the method did not complete (``strategy.incomplete_reason``); None when it did."""
        return self.record["strategy"].get("incomplete_reason")

    @property
    def head_only_epochs(self) -> int:
        """Epochs in which an adaptive strategy (Auto-SNR) let no backbone tensor train: the epoch was a probe of
        the head alone (``adaptive_backbone_tensors`` 0 in the epoch's entry)."""
        return sum(1 for e in self.epochs if e.get("adaptive_backbone_tensors") == 0)

    @property
    def predictions(self) -> dict[str, Any] | None:
        """Where the per-image predictions were kept (``format``, ``splits``), or None."""
        return self.record.get("predictions")

    # -- where and when -------------------------------------------------------------------------------------
    @property
    def environment(self) -> dict[str, Any]:
        return self.record["environment"]

    @property
    def code(self) -> dict[str, Any]:
        return self.record["code"]

    @property
    def started(self) -> str:
        return str(self.record["started"])

    @property
    def finished(self) -> str:
        return str(self.record["finished"])

    @property
    def finished_ts(self) -> float:
        return timestamp(self.finished)

    @property
    def started_ts(self) -> float:
        return timestamp(self.started)
