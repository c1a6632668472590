
"""Target 3: the harness's overhead. A full FT cell through the suite against a bare hand-written loop.

Both sides train the same model (timm, random init from the same seed), on the same uint8 tensors, with
the same batch size, optimizer (Adam 1e-3), number of epochs and steps. The suite's side is
``compute_cell`` (its training throughput is the record's ``train_images_per_s``: training-loop time, with
the per-epoch validation and the final evaluation reported apart, see bench_eval_cost.py); the bare side
is the loop anyone would write: shuffle, index, convert/resize/normalise, forward, loss, backward, step.

    python benchmarks/perf/bench_harness_overhead.py                    # resnet18, 28 px, 1024 images, 2 epochs
    python benchmarks/perf/bench_harness_overhead.py --backbone resnet50 --img-size 64 --train 2048
"""

from __future__ import annotations

import time
from typing import Any

import _common as C

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="pneumoniamnist")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--img-size", type=int, default=28)
    p.add_argument("--train", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    import timm
    import torch
    import torch.nn.functional as F

    from medft_bench.config import CellConfig, TrainSettings
    from medft_bench.data.sources import load_dataset
    from medft_bench.models.factory import create_backbone
    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell

    splits = {"train": args.train, "val": 64, "test": 64}
    data = load_dataset(args.dataset, args.img_size, synthetic_data=True, synthetic_splits=splits)
    target = create_backbone(args.backbone, data.n_classes, "random").target_size(data.image_size)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=256, patience=0,
                             scheduler="constant")

    def suite(seed: int) -> dict[str, Any]:
        cfg = CellConfig(tier="perf", dataset=args.dataset, backbone=args.backbone, strategy="ft", seed=seed,
                         img_size=args.img_size, weights="random", synthetic=True,
                         synthetic_splits=tuple(sorted(splits.items())), train=settings)
        t0 = time.perf_counter()
        rec = compute_cell(cfg, RunEnv(progress=False)).view
        wall = time.perf_counter() - t0
        assert rec.ok, rec.error
        c = rec.costs
        return {"images_per_s": c["train_images_per_s"], "train_s": c["train_s"], "eval_s": c["eval_s"],
                "wall_s": wall}

    def bare(seed: int) -> dict[str, Any]:
        torch.manual_seed(seed)
        model = timm.create_model(args.backbone, pretrained=False, num_classes=data.n_classes)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        images, labels = data.train.images, data.train.labels
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        g = torch.Generator().manual_seed(seed)
        n = len(labels)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            order = torch.randperm(n, generator=g)
            for i in range(0, n, args.batch_size):
                idx = order[i : i + args.batch_size]
                x = images[idx].float() / 255.0
                if x.shape[-1] != target:
                    x = F.interpolate(x, size=(target, target), mode="bilinear", align_corners=False, antialias=True)
                x = (x.expand(-1, 3, -1, -1) - mean) / std
                loss = F.cross_entropy(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        dt = time.perf_counter() - t0
        return {"images_per_s": args.epochs * n / dt, "train_s": dt}

    print(f"FT {args.backbone} (random init), synthetic {args.dataset} {args.img_size} px -> {target} px, "
          f"{args.train} images x {args.epochs} epochs, batch {args.batch_size}, load {C.load():.1f}")
    suite(0)  # warm-up (first-call costs: allocator, thread pools, lazy imports), not measured
    res = C.interleaved({"suite_ft_cell": suite, "bare_loop": bare}, args.repeats)
    per = C.ratios(res["suite_ft_cell"], res["bare_loop"], "images_per_s")
    ratio = C.median(per)
    wall_ratio = C.median([b["train_s"] / s["wall_s"] for s, b in zip(res["suite_ft_cell"], res["bare_loop"])])
    rows = [[k, C.median([r["images_per_s"] for r in v]), C.median([r["train_s"] for r in v]),
             C.median([r.get("wall_s", r["train_s"]) for r in v])] for k, v in res.items()]
    print()
    print(C.table(rows, ["side", "train img/s", "train s", "wall s"]))
    print(f"\ntraining throughput ratio suite / bare: {ratio:.3f} (per repeat {[round(x, 3) for x in per]}) "
          f"target >= 0.95: {C.verdict(ratio, 0.95)}; whole cell (with evaluation, data loading, record) "
          f"vs bare training: {wall_ratio:.3f}")
    path = C.write("harness_overhead", {"args": vars(args), "runs": res, "ratio": ratio, "ratio_per_repeat": per,
                                        "whole_cell_vs_bare_training": wall_ratio}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
