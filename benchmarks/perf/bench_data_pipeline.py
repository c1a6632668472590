"""Target 2: the data pipeline, against medmnist's own Dataset with per-sample torchvision transforms.

Ours: the split's uint8 tensor, batches formed by indexing a shuffled order, then converted, resized
(antialiased bilinear), grey replicated to three channels and normalised per batch on the device
(``medft_bench.data.batches``; the CPU here). Baseline: ``medmnist.<Flag>(split="train", as_rgb=True,
transform=...)`` through a ``torch.utils.data.DataLoader`` with shuffling, in two transform orders (PIL
resize first: ``Resize, ToTensor, Normalize``; tensor resize: ``ToTensor, Resize, Normalize``) and with
0 and 2 worker processes; the ratio is taken against the fastest baseline variant of each repeat.

medmnist's Dataset asserts the official split length and reads ``<flag>.npz`` from ``root``: the benchmark
writes a synthetic file with the official split sizes (``medmnist.INFO[flag]["n_samples"]``) at 28 px
into a temporary root and constructs the Dataset with ``download=False`` (size 28 is the file's size;
both sides resize 28 px to the target).

    python benchmarks/perf/bench_data_pipeline.py                 # pneumoniamnist + bloodmnist, 64 and 224 px
    python benchmarks/perf/bench_data_pipeline.py --images 8192   # more images per measurement
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import _common as C

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def write_official_sized(flag: str, root: Path) -> Path:
    import medmnist

    from medft_bench.data import medmnist as mm
    from medft_bench.data import synthetic

    meta = medmnist.INFO[flag]
    arrays = synthetic.make_arrays(meta["task"], mm.n_labels(flag), meta["n_channels"], 28,
                                   dict(meta["n_samples"]), seed=0)
    return synthetic.write_npz(root / f"{flag}.npz", arrays)


def ours(path: Path, flag: str, size: int, batch: int, n_images: int, seed: int) -> dict[str, Any]:
    import torch

    from medft_bench.data import medmnist as mm
    from medft_bench.data.batches import Preprocess, iterate

    t0 = time.perf_counter()
    split = mm.read_file(flag, path, 28).train  # reading the file is part of our side's cost
    t_read = time.perf_counter() - t0
    pre = Preprocess(target_size=size)
    seen, t0 = 0, time.perf_counter()
    checksum = 0.0
    for images, labels in iterate(split, batch, shuffle=True, generator=torch.Generator().manual_seed(seed)):
        x = pre(images, train=True)
        checksum += float(x[0, 0, 0, 0])
        seen += len(labels)
        if seen >= n_images:
            break
    dt = time.perf_counter() - t0
    return {"images": seen, "s": dt, "images_per_s": seen / dt, "read_s": t_read, "shape": list(x.shape)}


def baseline(root: Path, flag: str, size: int, batch: int, n_images: int, seed: int, order: str,
             workers: int) -> dict[str, Any]:
    import medmnist
    import torch
    from torch.utils.data import DataLoader
    from torchvision import transforms as T

    if order == "pil_resize":
        tf = T.Compose([T.Resize(size, antialias=True), T.ToTensor(), T.Normalize(MEAN, STD)])
    else:
        tf = T.Compose([T.ToTensor(), T.Resize(size, antialias=True), T.Normalize(MEAN, STD)])
    cls = getattr(medmnist, medmnist.INFO[flag]["python_class"])
    ds = cls(split="train", root=str(root), download=False, as_rgb=True, transform=tf)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed), persistent_workers=False)
    seen, t0 = 0, time.perf_counter()  # worker start-up counts: it is paid once per epoch
    shape = None
    for batch, labels in loader:
        seen += len(labels)
        shape = list(batch.shape)
        if seen >= n_images:
            break
    dt = time.perf_counter() - t0
    del loader
    return {"images": seen, "s": dt, "images_per_s": seen / dt, "shape": shape}


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--flags", default="pneumoniamnist,bloodmnist")
    p.add_argument("--sizes", default="64,224")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--images", type=int, default=2048, help="images per measurement (a part of one epoch)")
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts for the baseline")
    args = p.parse_args()
    cache = C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)
    flags = [f for f in args.flags.split(",") if f]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    workers = [int(w) for w in args.workers.split(",") if w]

    rows, results = [], {}
    root = cache / "medmnist-official-sized"
    root.mkdir(parents=True, exist_ok=True)
    for flag in flags:
        path = write_official_sized(flag, root)
        for size in sizes:
            key = f"{flag}-28to{size}"
            print(f"{key}: {args.images} images per measurement, batch {args.batch_size}, load {C.load():.1f}")
            sides: dict[str, Any] = {"ours": lambda r, f=flag, s=size, p=path: ours(p, f, s, args.batch_size,
                                                                                     args.images, r)}
            for order in ("pil_resize", "tensor_resize"):
                for w in workers:
                    sides[f"medmnist_{order}_w{w}"] = (
                        lambda r, f=flag, s=size, o=order, w=w: baseline(root, f, s, args.batch_size, args.images,
                                                                          r, o, w))
            res = C.interleaved(sides, args.repeats)
            per_repeat = []
            for i in range(args.repeats):
                best = max(v[i]["images_per_s"] for k, v in res.items() if k != "ours")
                per_repeat.append(res["ours"][i]["images_per_s"] / best)
            ratio = C.median(per_repeat)
            med = {k: C.median([r["images_per_s"] for r in v]) for k, v in res.items()}
            best_name = max((k for k in med if k != "ours"), key=med.get)
            results[key] = {"runs": res, "median_images_per_s": med, "ratio_vs_fastest_baseline": ratio,
                            "ratio_per_repeat": per_repeat, "fastest_baseline": best_name}
            rows.append([key, med["ours"], med[best_name], best_name, ratio, C.verdict(ratio, 5)])
    print()
    print(C.table(rows, ["case", "ours img/s", "baseline img/s", "fastest baseline", "ratio", "target >= 5x"]))
    path = C.write("data_pipeline", {"args": vars(args), "results": results}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
