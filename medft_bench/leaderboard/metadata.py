"""Run metadata that makes the numbers trustworthy: code versions (commit, dirty flag), hardware, library
versions, seeds and the time range of the records. All from the records themselves, never from the
machine that builds the leaderboard (so the same records always give the same pages)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from medft_bench.leaderboard.load import Run


def _code(run: Run) -> str:
    code = run.code
    commit = code.get("commit")
    dirty = code.get("dirty")
    state = "dirty: uncommitted changes" if dirty else ("clean" if dirty is False else "dirty flag unknown")
    return f"{code.get('version')} @ {commit[:12] if commit else 'no git commit'} ({state})"


def _hardware(run: Run) -> str:
    env = run.environment
    device = str(env.get("device") or "?")
    if env.get("gpu"):
        extra = ", ".join(x for x in (f"CUDA {env['cuda']}" if env.get("cuda") else "",
                                      f"cuDNN {env['cudnn']}" if env.get("cudnn") else "") if x)
        return f"GPU: {env['gpu']}" + (f" ({extra})" if extra else "") + f" [{device}]"
    threads = env.get("torch_threads")
    return f"CPU: {env.get('cpu') or '?'}" + (f" ({threads} torch threads)" if threads else "") + f" [{device}]"


def run_metadata(runs: list[Run]) -> dict[str, Any]:
    """What ran, where, with which code and libraries, and when (records of every status)."""
    if not runs:
        return {"records": 0}
    packages: dict[str, set[str]] = {}
    for run in runs:
        for name, ver in (run.environment.get("packages") or {}).items():
            packages.setdefault(name, set()).add(str(ver) if ver is not None else "not installed")
    first = min(runs, key=lambda r: (r.started_ts, r.started))
    last = max(runs, key=lambda r: (r.finished_ts, r.finished))
    status = Counter(r.status for r in runs)
    return {
        "records": len(runs),
        "status": {k: status.get(k, 0) for k in ("ok", "diverged", "failed")},
        "code": sorted(Counter(map(_code, runs)).items()),
        "dirty": any(r.code.get("dirty") for r in runs),
        "hardware": sorted(Counter(map(_hardware, runs)).items()),
        "python": sorted({str(r.environment.get("python")) for r in runs}),
        "packages": {k: sorted(v) for k, v in sorted(packages.items())},
        "seeds": sorted({r.seed for r in runs}),
        "started": first.started,
        "finished": last.finished,
    }


def metadata_lines(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs for display."""
    if not meta.get("records"):
        return [("records", "0")]
    st = meta["status"]
    lines = [
        ("records", f"{meta['records']} ({st['ok']} ok, {st['diverged']} diverged, {st['failed']} failed)"),
        ("records from", f"{meta['started']} to {meta['finished']}"),
        ("suite code", "; ".join(f"{k} ×{n}" for k, n in meta["code"])),
        ("hardware", "; ".join(f"{k} ×{n}" for k, n in meta["hardware"])),
        ("python", ", ".join(meta["python"])),
        ("libraries", "; ".join(f"{k} {', '.join(v)}" for k, v in meta["packages"].items()) or "not recorded"),
        ("seeds", ", ".join(map(str, meta["seeds"]))),
    ]
    warnings = []
    if meta["dirty"]:
        warnings.append("some records come from a working tree with uncommitted changes")
    if len(meta["code"]) > 1:
        warnings.append("records come from more than one code version")
    if len(meta["hardware"]) > 1:
        # Not only costs: a CPU model or thread count changes float rounding, and 48 Adam steps amplify it (the same
        # Auto-RGN cell: 80.1 % at 2 threads, 79.0 % at 1, 81.0 % on another CPU; docs/strategies.md).
        warnings.append("records come from more than one kind of machine: compare costs with care, and metrics "
                        "too (the same cell's metrics differ with the CPU model and thread count)")
    multi = [k for k, v in meta["packages"].items() if len(v) > 1]
    if multi:
        warnings.append(f"several versions of {', '.join(multi)}")
    if warnings:
        lines.append(("warnings", "; ".join(warnings)))
    return lines
