
"""Target 4: the GPU path. Images per second and peak memory of FT through the suite against a plain loop.

For resnet50, densenet121 and vgg19 at 224 px, batch 64, one FT pass of ``--steps`` steps over synthetic
BloodMNIST-format data at 224 px (no resizing on either side):

* ``suite``: ``compute_cell`` (bf16 autocast and channels_last, the CUDA defaults; ``--compile`` adds
  torch.compile, whose compile time is reported apart as ``compile_s``, not in the throughput),
* ``plain_fp32``: the same model trained by a plain timm/PyTorch loop, fp32, default memory format,
* ``plain_bf16_cl``: the plain loop with bf16 autocast and channels_last, to separate the harness's
  overhead from the precision and memory-format gains.

Throughput is over the whole pass including its first steps (both sides alike); peak memory is
``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. Without CUDA the benchmark prints
the reason it skipped and exits 0; ``--allow-cpu`` runs a tiny version on the CPU to check the code path.

    python benchmarks/perf/bench_gpu.py                  # on a CUDA machine
    python benchmarks/perf/bench_gpu.py --compile        # with torch.compile
    python benchmarks/perf/bench_gpu.py --allow-cpu --backbones resnet18 --img-size 32 --batch-size 8 --steps 3
"""

from __future__ import annotations

import sys
import time
from typing import Any

import _common as C

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--backbones", default="resnet50,densenet121,vgg19")
    p.add_argument("--dataset", default="bloodmnist")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds of every side per backbone first")
    p.add_argument("--compile", action="store_true", help="torch.compile the suite's model (TrainSettings.compile)")
    p.add_argument("--allow-cpu", action="store_true", help="run on the CPU anyway (a code-path check only)")
    p.set_defaults(repeats=2)
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)

    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        reason = "SKIPPED: no CUDA device (torch.cuda.is_available() is False); this target needs a GPU"
        print(reason)
        path = C.write("gpu", {"args": vars(args), "skipped": reason}, args.out)
        print(f"wrote {path}")
        return
    C.wait_for_low_load(args.max_load, args.wait_s)

    import timm
    import torch.nn.functional as F

    from medft_bench.config import CellConfig, TrainSettings
    from medft_bench.data.sources import load_dataset
    from medft_bench.models.factory import create_backbone
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = dev.type == "cuda"
    n_train = args.batch_size * args.steps
    splits = {"train": n_train, "val": args.batch_size, "test": args.batch_size}
    data = load_dataset(args.dataset, args.img_size, synthetic_data=True, synthetic_splits=splits)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def reset_peak() -> None:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def suite(backbone: str, seed: int) -> dict[str, Any]:
        settings = TrainSettings(epochs=1, batch_size=args.batch_size, eval_batch_size=args.batch_size * 2,
                                 patience=0, compile=args.compile)
        cfg = CellConfig(tier="perf", dataset=args.dataset, backbone=backbone, strategy="ft", seed=seed,
                         img_size=args.img_size, weights="random", synthetic=True,
                         synthetic_splits=tuple(sorted(splits.items())), train=settings)
        reset_peak()
        rec = compute_cell(cfg, RunEnv(device=dev, progress=False)).view
        assert rec.ok, rec.error
        c = rec.costs
        compile_s = c.get("compile_s") or 0.0
        train_s = c["train_s"] - compile_s  # compile time is reported apart, not in the throughput
        return {"images_per_s": n_train / train_s, "peak_mb": c["peak_gpu_allocated_mb"], "train_s": train_s,
                "compile_s": c.get("compile_s"), "amp": rec.config["amp"],
                "channels_last": rec.config["channels_last"]}

    def plain(backbone: str, seed: int, fast: bool) -> dict[str, Any]:
        torch.manual_seed(seed)
        if backbone == "vgg19":  # the study's VGG-19 is torchvision's
            import torchvision

            model = torchvision.models.vgg19(num_classes=data.n_classes)
        else:
            model = timm.create_model(backbone, pretrained=False, num_classes=data.n_classes)
        model.to(dev).train()
        if fast:
            model.to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=dev).view(1, 3, 1, 1)
        images, labels = data.train.images, data.train.labels
        g = torch.Generator().manual_seed(seed)
        reset_peak()
        sync()
        t0 = time.perf_counter()
        order = torch.randperm(n_train, generator=g)
        for i in range(0, n_train, args.batch_size):
            idx = order[i : i + args.batch_size]
            x = images[idx].to(dev, non_blocking=True).float().div_(255)
            x = (x.expand(-1, 3, -1, -1) - mean) / std
            y = labels[idx].to(dev, non_blocking=True)
            if fast:
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    out = model(x)
            else:
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        dt = time.perf_counter() - t0
        return {"images_per_s": n_train / dt, "train_s": dt,
                "peak_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}

    backbones = [b for b in args.backbones.split(",") if b]
    print(f"FT at {args.img_size} px, batch {args.batch_size}, {args.steps} steps on {dev}"
          f"{' (' + torch.cuda.get_device_name(0) + ')' if cuda else ''}, compile={args.compile}")
    results: dict[str, Any] = {}
    rows = []
    for b in backbones:
        create_backbone(b, data.n_classes, "random")  # fail early on an unknown name
        sides = {"suite": lambda r, b=b: suite(b, r), "plain_fp32": lambda r, b=b: plain(b, r, False),
                 "plain_bf16_cl": lambda r, b=b: plain(b, r, True)}
        for w in range(args.warmup):  # cuDNN picks its kernels on a shape's first use: whichever side came first paid
            for fn in sides.values():
                fn(1000 + w)
        res = C.interleaved(sides, args.repeats)
        vs_fp32 = C.median(C.ratios(res["suite"], res["plain_fp32"], "images_per_s"))
        vs_fast = C.median(C.ratios(res["suite"], res["plain_bf16_cl"], "images_per_s"))
        med = {k: C.median([r["images_per_s"] for r in v]) for k, v in res.items()}
        peak = {k: C.median([r["peak_mb"] for r in v]) if cuda else None for k, v in res.items()}
        compile_s = [r["compile_s"] for r in res["suite"]]
        results[b] = {"runs": res, "median_images_per_s": med, "peak_mb": peak, "suite_vs_plain_fp32": vs_fp32,
                      "suite_vs_plain_bf16_cl": vs_fast, "compile_s": compile_s}
        rows.append([b, med["suite"], med["plain_fp32"], med["plain_bf16_cl"], vs_fp32, vs_fast,
                     peak["suite"] or "-", peak["plain_fp32"] or "-", peak["plain_bf16_cl"] or "-",
                     compile_s[0] if compile_s[0] is not None else "-"])
    print()
    print(C.table(rows, ["backbone", "suite img/s", "plain fp32 img/s", "plain bf16+CL img/s", "suite/fp32",
                         "suite/bf16+CL", "suite peak MB", "fp32 peak MB", "bf16+CL peak MB", "compile s"]))
    path = C.write("gpu", {"args": vars(args), "device": str(dev), "results": results}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
