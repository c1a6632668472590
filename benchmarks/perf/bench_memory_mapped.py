"""Issue 17: host memory of the data path at 224 px, memory-mapped vs read into RAM, on a large and a small file.

Generates two synthetic BloodMNIST-shaped 224 px RGB files (default 12,000 and 1,000 images; the large one
is about 1.8 GB of pixels) with the chunked generator, then measures, each in a fresh child process whose
peak resident memory is read from ``wait4`` (ru_maxrss, so nothing else in the parent counts):

* ``cell``: what a cell does with its data: load the file through the real loader, build resnet18 (random
  init), train ``--train-steps`` steps on shuffled batches, then read every image of every split once through
  ``iterate`` + ``Preprocess`` (the worst case for a memory map: all of it touched). Run on both files, with
  the memory-mapped loader and with today's (``--today-src``: a source tree of the code before the change,
  e.g. ``git archive 5d4c078 medft_bench | tar -x -C /tmp/today``), or with this tree's in-RAM path
  (``MIN_BYTES`` set above the file's size) when no old tree is given.
* ``workers``: two memory-mapped cells on the large file at the same time (pytest-xdist workers on one host).
* ``throughput``: images/s of training steps and of the data path alone, memory-mapped vs in RAM, warm page
  cache, interleaved in one process; and the same for a small 28 px file (is the in-RAM fast path faster?).
* ``generate``: peak RSS and time of writing the large file.

    python benchmarks/perf/bench_memory_mapped.py --workdir /tmp/medft-mmap --today-src /tmp/today
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

FLAG = "bloodmnist"


def _split_sizes(n: int) -> dict[str, int]:
    val = test = max(1, n // 12)
    return {"train": n - val - test, "val": val, "test": test}


# ------------------------------------------------------------------------------------------ child side


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    if spec["kind"] == "generate":
        from medft_bench.data import synthetic

        t0 = time.perf_counter()
        synthetic.write_synthetic_medmnist(FLAG, spec["size"], spec["root"], _split_sizes(spec["n"]), seed=0)
        return {"generate_s": time.perf_counter() - t0}
    if spec.get("min_bytes") is not None:
        from medft_bench.data import mapped

        mapped.MIN_BYTES = spec["min_bytes"]
    from medft_bench.data.batches import Preprocess
    from medft_bench.data.medmnist import read_file
    from medft_bench.models.factory import create_backbone

    t0 = time.perf_counter()
    data = read_file(FLAG, Path(spec["file"]), spec["size"])
    out: dict[str, Any] = {"load_s": time.perf_counter() - t0, "conversion_s": getattr(data, "conversion_s", None),
                           "mapped": bool(getattr(data.train, "memory_mapped", False))}
    backbone = create_backbone("resnet18", data.n_classes, "random")
    model = backbone.model
    pre = Preprocess(target_size=spec["size"], mean=backbone.mean, std=backbone.std)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    bs, steps = spec["batch_size"], spec["train_steps"]
    if spec["kind"] == "cell":
        out["train_s"] = _train_on(data, steps, 0, model, opt, pre, bs)
        n, t = 0, 0.0
        for name in ("train", "val", "test"):  # every image once: the whole file goes through the data path
            k, s = _read_on(data.split(name), None, pre, bs)
            n, t = n + k, t + s
        out.update(read_images=n, read_s=t)
        return out
    # throughput: this file memory-mapped and read into RAM, interleaved, warm page cache
    from medft_bench.data import mapped

    mapped.MIN_BYTES = 1 << 62
    sides = {"mapped": data, "ram": read_file(FLAG, Path(spec["file"]), spec["size"])}
    res: dict[str, list[float]] = {f"{s}_{m}": [] for s in sides for m in ("train_ips", "data_ips")}
    for _ in range(spec["repeats"]):
        for side, d in sides.items():
            if steps:
                res[f"{side}_train_ips"].append(steps * bs / _train_on(d, steps, 0, model, opt, pre, bs))
            n, t = _read_on(d.train, spec["data_images"], pre, bs)
            res[f"{side}_data_ips"].append(n / t)
    return {**out, **res}


def _train_on(data: Any, steps: int, seed: int, model: Any, opt: Any, pre: Any, bs: int) -> float:
    import torch

    from medft_bench.data.batches import iterate

    model.train()
    t = time.perf_counter()
    for i, (x, y) in enumerate(iterate(data.train, bs, shuffle=True, generator=torch.Generator().manual_seed(seed))):
        if i >= steps:
            break
        loss = torch.nn.functional.cross_entropy(model(pre(x, train=True)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def _read_on(split: Any, limit: int | None, pre: Any, bs: int) -> tuple[int, float]:
    import torch

    from medft_bench.data.batches import iterate

    n, t = 0, time.perf_counter()
    for x, _ in iterate(split, bs, shuffle=True, generator=torch.Generator().manual_seed(1)):
        pre(x)
        n += len(x)
        if limit and n >= limit:
            break
    return n, time.perf_counter() - t


# ------------------------------------------------------------------------------------------ parent side


def _spawn(spec: dict[str, Any], src: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{C.REPO}", "HF_HUB_OFFLINE": "1", "MEDFT_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                            stdout=subprocess.PIPE, text=True)


def _reap(proc: subprocess.Popen) -> dict[str, Any]:
    """Wait for one child; its own peak RSS comes from wait4, not from the parent's running maximum."""
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.args}")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss_mb"] = usage.ru_maxrss / 1024
    return res


def run_child(spec: dict[str, Any], src: Path, log: Any = print) -> dict[str, Any]:
    res = _reap(_spawn(spec, src))
    log(f"  {spec['kind']} {spec.get('label', '')}: " + ", ".join(f"{k}={C._fmt(v)}" for k, v in res.items()))
    return res


def _drop_conversion(file: Path) -> None:
    import shutil

    shutil.rmtree(file.with_name(file.name + ".arrays"), ignore_errors=True)


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--child", default=None, help=argparse_hidden())
    p.add_argument("--workdir", default=None,
                   help="where the generated files go (default: a 'data' folder in the cache dir); about 3.5 GB "
                        "at the default sizes")
    p.add_argument("--large", type=int, default=12000, help="images in the large file (all splits)")
    p.add_argument("--small", type=int, default=1000, help="images in the small file")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=2, help="training steps per cell (resnet18 at --size)")
    p.add_argument("--data-images", type=int, default=2048, help="images per data-path throughput measurement")
    p.add_argument("--today-src", default=None,
                   help="a source tree of the code before the memory-mapped path (its medft_bench/ is imported)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: cell, workers, throughput, generate")
    p.add_argument("--loaders", default="mapped,other",
                   help="the cells' loaders: mapped and/or other (today's with --today-src, else in RAM)")
    p.add_argument("--cleanup", action="store_true", help="delete the generated files and conversions at the end")
    p.set_defaults(repeats=2)
    args = p.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    cache = C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)
    skip = set(filter(None, args.skip.split(",")))
    here = C.REPO
    today = Path(args.today_src) if args.today_src else None
    work = Path(args.workdir) if args.workdir else cache / "data"
    files = {}
    results: dict[str, Any] = {"sizes": {"large": args.large, "small": args.small, "px": args.size}}
    base = {"size": args.size, "batch_size": args.batch_size, "train_steps": args.train_steps,
            "threads": args.threads}
    for label, n in (("large", args.large), ("small", args.small)):
        root = work / f"n{n}"
        files[label] = root / f"{FLAG}_{args.size}.npz"
        if not files[label].is_file():
            res = run_child({"kind": "generate", "size": args.size, "n": n, "root": str(root), "label": label}, here)
            if label == "large":
                results["generate"] = {**res, "images_mb": n * args.size * args.size * 3 / 2**20}
    results["file_mb"] = {k: f.stat().st_size / 2**20 for k, f in files.items()}

    if "cell" not in skip:
        wanted = set(args.loaders.split(","))
        loaders = {"mapped": (here, 0)} if "mapped" in wanted else {}
        if "other" in wanted:
            loaders["today" if today else "ram"] = (today, None) if today else (here, 1 << 62)
        cells: dict[str, Any] = {}
        for loader, (src, min_bytes) in loaders.items():
            for label in ("small", "large"):
                if loader == "mapped":
                    _drop_conversion(files[label])  # the first cell converts: its one-time cost is measured
                spec = {**base, "kind": "cell", "file": str(files[label]), "min_bytes": min_bytes,
                        "label": f"{loader}/{label}"}
                cells[f"{loader}/{label}"] = first = run_child(spec, src)
                if loader == "mapped":  # and a second cell reuses the conversion
                    again = run_child({**spec, "label": f"{loader}/{label} (reused)"}, src)
                    cells[f"{loader}/{label}"] = {**again, "first_cell": first}
        results["cells"] = cells

    if "workers" not in skip:
        spec = {**base, "kind": "cell", "file": str(files["large"]), "min_bytes": 0}
        procs = [_spawn({**spec, "label": f"worker {i}"}, here) for i in range(2)]
        both = [_reap(pr) for pr in procs]
        print("  two workers: " + "; ".join(f"peak {w['peak_rss_mb']:.0f} MB" for w in both))
        results["workers"] = {"two": both, "sum_peak_rss_mb": sum(w["peak_rss_mb"] for w in both)}

    if "throughput" not in skip:
        spec = {**base, "kind": "throughput", "file": str(files["large"]), "min_bytes": 0,
                "repeats": args.repeats, "data_images": args.data_images, "label": "224 px"}
        results["throughput_224"] = run_child(spec, here)
        small28 = work / "n1000-28" / f"{FLAG}.npz"
        if not small28.is_file():
            run_child({"kind": "generate", "size": 28, "n": 1000, "root": str(small28.parent), "label": "28 px"},
                      here)
        results["throughput_28"] = run_child({**spec, "file": str(small28), "size": 28, "batch_size": 128,
                                              "train_steps": 0, "data_images": 20000, "label": "28 px"}, here)
    _report(results, today is not None)
    out = C.write("memory_mapped", results, args.out)
    print(f"\nwritten to {out}")
    if args.cleanup:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def _report(r: dict[str, Any], has_today: bool) -> None:
    print()
    if "cells" in r:
        other = "today" if has_today else "ram"
        rows = []
        for loader in ("mapped", other):
            if f"{loader}/small" not in r["cells"]:
                continue
            small, large = r["cells"][f"{loader}/small"], r["cells"][f"{loader}/large"]
            growth = large["peak_rss_mb"] - small["peak_rss_mb"]
            rows.append([loader, small["peak_rss_mb"], large["peak_rss_mb"], growth, large["load_s"]])
        print(C.table(rows, ["loader", "peak RSS MB, small", "peak RSS MB, large", "large - small MB",
                             "load s, large"]))
        if "mapped/large" not in r["cells"]:
            return
        d = r["cells"]["mapped/large"]["peak_rss_mb"] - r["cells"]["mapped/small"]["peak_rss_mb"]
        r["mapped_growth_mb"] = d
        print(f"memory-mapped growth {d:.0f} MB (target <= 512 MB): {C.verdict(d, 512, higher_is_better=False)}")
        first = r["cells"]["mapped/large"]["first_cell"]
        r["conversion_s_large"] = first["conversion_s"]
        print(f"one-time conversion of the large file: {first['conversion_s']:.1f} s")
    if "workers" in r:
        one = r["cells"]["mapped/large"]["peak_rss_mb"] if "cells" in r else float("nan")
        print(f"two workers on the large file: sum of peaks {r['workers']['sum_peak_rss_mb']:.0f} MB "
              f"(one worker {one:.0f} MB)")
    for key in ("throughput_224", "throughput_28"):
        if key in r:
            t = r[key]
            for m in ("train_ips", "data_ips"):
                if t.get(f"mapped_{m}"):
                    ratio = C.median(C.ratios([{"v": v} for v in t[f"mapped_{m}"]], [{"v": v} for v in t[f"ram_{m}"]],
                                              "v"))
                    r[f"{key}_{m}_ratio"] = ratio
                    print(f"{key} {m}: mapped / in RAM = {ratio:.3f} (mapped {C.median(t[f'mapped_{m}']):.1f}, "
                          f"RAM {C.median(t[f'ram_{m}']):.1f} images/s)")
    if "generate" in r:
        g = r["generate"]
        print(f"generating the large file: peak RSS {g['peak_rss_mb']:.0f} MB for {g['images_mb']:.0f} MB of images "
              f"({g['peak_rss_mb'] / g['images_mb']:.2f}x), {g['generate_s']:.0f} s")


if __name__ == "__main__":
    main()
