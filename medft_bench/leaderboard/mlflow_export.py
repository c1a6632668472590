"""``python -m medft_bench.leaderboard export-mlflow RESULTS --tracking-uri URI``: the records as MLflow runs.

One MLflow run per counted record (the leaderboard's loader: schema-checked, a cell counted once), in one
experiment: params are the cell and its configuration (nested keys joined with dots), metrics the test and
validation metrics (``test_auc``, ``val_auc``, ...), the validation metrics after each epoch as steps
(``epoch_val_auc`` at step 0, 1, ...; stages in the order they ran) and the costs (``cost_train_s``, ...), tags
the status, cell id, configuration hash, commit and strategy; the record file is the run's artifact. A run
already exported (same configuration hash and ``finished`` time) is skipped, so exporting again adds only new
records. Works offline against a local file store (``file:///tmp/mlruns``; MLflow 3 keeps that store in
maintenance mode, so a ``file:`` URI sets ``MLFLOW_ALLOW_FILE_STORE``) or a database (``sqlite:///mlflow.db``,
with full ``mlflow``); needs the ``mlflow`` extra (``pip install 'medft-bench[mlflow]'``: ``mlflow-skinny``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from medft_bench.errors import MedftError
from medft_bench.leaderboard.load import Run, load_inputs
from medft_bench.text import printable
from medft_bench.vocabulary import METRICS

EXPERIMENT = "medft-bench"
TAG_PREFIX = "medft."
MAX_PARAM = 500  # characters of a param value every MLflow store accepts (newer ones take more)
INSTALL_HINT = ("export-mlflow needs MLflow: pip install 'medft-bench[mlflow]' (or mlflow-skinny, which is "
                "enough for a local file store)")


@dataclass
class Exported:
    """What an export did: the experiment, runs created, and records skipped as already there."""

    experiment_id: str
    created: int
    skipped: int


def _flatten(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k in sorted(value):
            yield from _flatten(value[k], f"{prefix}.{k}" if prefix else str(k))
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        yield prefix, text[:MAX_PARAM]


def params(run: Run) -> dict[str, str]:
    """The cell (``cell.tier``, ``cell.strategy``, ...) and its configuration (``config.train.lr``, ...)."""
    return dict([*_flatten(run.cell, "cell"), *_flatten(run.config, "config"),
                 *_flatten({"name": run.data.get("name"), "modality": run.modality, "task": run.task,
                            "splits": run.splits}, "data")])


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def metrics(run: Run) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Final metrics (split and cost values) and per-epoch series (validation metrics and training loss)."""
    final: dict[str, float] = {}
    for split in ("test", "val"):
        for name, value in ((run.metrics or {}).get(split) or {}).items():
            if (v := _number(value)) is not None:
                final[f"{split}_{name}"] = v
    for name, value in run.costs.items():
        if (v := _number(value)) is not None:
            final[f"cost_{name}"] = v
    series: dict[str, list[float]] = {}
    for entry in run.epochs:
        val = entry.get("val") if isinstance(entry.get("val"), dict) else {}
        for name in METRICS:
            if (v := _number(val.get(name))) is not None:
                series.setdefault(f"epoch_val_{name}", []).append(v)
        if (v := _number(entry.get("train_loss"))) is not None:
            series.setdefault("epoch_train_loss", []).append(v)
    return final, series


def tags(run: Run) -> dict[str, str]:
    return {"mlflow.runName": run.cell_id, f"{TAG_PREFIX}status": run.status, f"{TAG_PREFIX}cell_id": run.cell_id,
            f"{TAG_PREFIX}config_hash": run.config_hash, f"{TAG_PREFIX}finished": run.finished,
            f"{TAG_PREFIX}commit": str(run.code.get("commit") or ""), f"{TAG_PREFIX}dirty": str(run.code.get("dirty")),
            f"{TAG_PREFIX}strategy": run.label or run.strategy, f"{TAG_PREFIX}record": run.path,
            **({f"{TAG_PREFIX}error": run.error[:MAX_PARAM]} if run.error else {})}


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def export(sources: list[str], tracking_uri: str, experiment: str = EXPERIMENT) -> Exported:
    """Log every counted record under ``sources`` as a run of ``experiment`` at ``tracking_uri``."""
    try:
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise MedftError(INSTALL_HINT) from None
    inputs = load_inputs(sources)
    if not inputs.runs:
        raise MedftError(f"no valid result records in {', '.join(inputs.sources) or '(no inputs)'}")
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        # MLflow 3 keeps its file store in maintenance mode and refuses it unless asked; a local file store is
        # what an offline export is for, and asking for one by URI is asking
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    exp_id = found.experiment_id if found else client.create_experiment(experiment)
    done = {(r.data.tags.get(f"{TAG_PREFIX}config_hash"), r.data.tags.get(f"{TAG_PREFIX}finished"))
            for r in client.search_runs([exp_id], max_results=50_000)}
    created = skipped = 0
    for run in sorted(inputs.runs, key=lambda r: (r.finished, r.cell_id)):
        if (run.config_hash, run.finished) in done:
            skipped += 1
            continue
        start, end = _ms(run.started), _ms(run.finished)
        mlrun = client.create_run(exp_id, start_time=start, tags=tags(run), run_name=run.cell_id)
        final, series = metrics(run)
        batch = [Metric(k, v, end, 0) for k, v in final.items()]
        batch += [Metric(k, v, end, step) for k, values in series.items() for step, v in enumerate(values)]
        ps = [Param(k, v) for k, v in params(run).items()]
        for lo in range(0, max(len(batch), len(ps), 1), 100):  # MLflow's batch limits: 1000 metrics, 100 params
            client.log_batch(mlrun.info.run_id, metrics=batch[lo:lo + 100], params=ps[lo:lo + 100])
        client.log_artifact(mlrun.info.run_id, run.path)
        client.set_terminated(mlrun.info.run_id, status="FINISHED" if run.ok else "FAILED", end_time=end)
        created += 1
    return Exported(exp_id, created, skipped)


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{prog} export-mlflow",
        description="Log every counted result record as an MLflow run (params: the cell and its configuration; "
                    "metrics: test and validation metrics, per-epoch validation metrics as steps, costs; tags: "
                    "status, cell id, configuration hash, commit). Records already exported are skipped.")
    p.add_argument("results", nargs="*", default=None, metavar="RESULTS",
                   help="result directories or record files (default: results/)")
    p.add_argument("--tracking-uri", required=True, metavar="URI",
                   help="where the runs go, e.g. file:///tmp/mlruns (a local store, offline) or an MLflow server")
    p.add_argument("--experiment", default=EXPERIMENT, help=f"the experiment's name (default: {EXPERIMENT})")
    return p


def main(argv: list[str], prog: str) -> int:
    args = parser(prog).parse_args(argv)
    try:
        done = export(args.results or ["results"], args.tracking_uri, args.experiment)
    except (MedftError, OSError) as exc:
        print(printable(f"{prog} export-mlflow: error: {exc}"), file=sys.stderr)
        return 1
    # two short lines: a terminal of 80 columns wraps a long one inside the experiment's id or the URI
    print(f"MLflow: {done.created} run(s) logged, {done.skipped} already there")
    print(printable(f"  experiment {args.experiment!r}, id {done.experiment_id}"))
    print(printable(f"  tracking URI {args.tracking_uri}"))
    return 0
