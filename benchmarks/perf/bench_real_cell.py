"""Issue 41: a real-tier FT cell against the CPU's limit and a bare PyTorch loop, in one process.

Sides, interleaved (``A B C D A B C D ...``), each a fresh run of the same real-tier FT cell (EfficientNet-Lite0
with the packaged ImageNet weights, bundled BreastMNIST 28 px shown at 48 px, batch 32, 512 training images,
3 epochs) or loop:

- ``suite_old``: the path before issue 41 (contiguous memory format, evaluation batch 256);
- ``suite_new``: the real tier's defaults (channels_last, evaluation batch 64);
- ``bare_contiguous`` / ``bare_channels_last``: a hand-written loop over the same network (built as the cell
  builds it), the same uint8 images and batch: shuffle, index, convert, ``F.interpolate``, normalise, forward,
  cross-entropy, backward, Adam; then evaluation of the validation and test splits in batches of 64.

Training images/s are the record's ``train_images_per_s`` (suite) or epochs x images / loop time (bare);
evaluation images/s are evaluated images / ``eval_s``. Achieved GFLOP/s = images/s x FLOPs per image: the
forward pass counted with ``torch.utils.flop_counter.FlopCounterMode`` at 48 px, a training image as three
forward passes (forward, and a backward of about twice its cost; torch's counter overstates the weight
gradient of depthwise convolutions by their group count, so it is not used for the backward).

    python benchmarks/perf/bench_real_cell.py --threads 1 --repeats 2
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import _common as C


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--dataset", default="breastmnist")
    p.add_argument("--bare-epochs", type=int, default=1, help="epochs of the bare loop (each side times its own)")
    p.add_argument("--peak-gflops-per-core", type=float, default=78.4,
                   help="assumed fp32 peak of one core (default: AMD Zen 3, AVX2, 2 FMA pipes x 8 lanes x 2 FLOP "
                        "at 2.45 GHz)")
    p.add_argument("--cores", type=int, default=0, help="cores the peak counts (default: --threads, else 1)")
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from medft_bench.run_env import RunEnv
    from medft_bench.runner import compute_cell, resolved
    from medft_bench.tiers import TIERS
    from medft_bench.training.engine import build_context

    threads = args.threads or torch.get_num_threads()
    new = TIERS["real"].cell(args.dataset, 28, "tf_efficientnet_lite0", "ft", 0, overrides={"threads": threads})
    old = replace(new, train=replace(new.train, channels_last="off", eval_batch_size=256))
    env = RunEnv(progress=False)
    new, old = resolved(new, env), resolved(old, env)

    ctx, _ = build_context(new, env)
    model0 = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    ctx.model.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        ctx.model(ctx.to_input(ctx.data.val.images[:1].clone()))
    fwd = fc.get_total_flops()
    train_flops = 3 * fwd

    def suite(cfg: Any) -> Any:
        def run(_: int) -> dict[str, Any]:
            t0 = time.perf_counter()
            out = compute_cell(cfg, env)
            rec = out.record
            assert rec["status"] == "ok", rec.get("error")
            c = rec["costs"]
            n_eval = (len(ctx.data.val) * (cfg.train.epochs + 1) + len(ctx.data.test))
            return {"train_img_s": c["train_images_per_s"], "eval_img_s": n_eval / c["eval_s"],
                    "train_s": c["train_s"], "eval_s": c["eval_s"], "wall_s": time.perf_counter() - t0}
        return run

    def bare(channels_last: bool) -> Any:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        mean = torch.tensor(ctx.backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(ctx.backbone.std).view(1, 3, 1, 1)
        size = ctx.preprocess.target_size

        def prep(images: torch.Tensor) -> torch.Tensor:
            x = F.interpolate(images.float() / 255.0, size=(size, size), mode="bilinear", align_corners=False,
                              antialias=True)
            return ((x.expand(-1, 3, -1, -1) - mean) / std).contiguous(memory_format=fmt)

        def run(seed: int) -> dict[str, Any]:
            model = ctx.model
            model.load_state_dict(model0)
            model.to(memory_format=fmt).train()
            for q in model.parameters():
                q.requires_grad_(True)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
            images, labels = ctx.data.train.images, ctx.data.train.labels
            g = torch.Generator().manual_seed(seed)
            n, bs = len(labels), new.train.batch_size
            t0 = time.perf_counter()
            for _ in range(args.bare_epochs):
                order = torch.randperm(n, generator=g)
                for i in range(0, n, bs):
                    idx = order[i: i + bs]
                    loss = F.cross_entropy(model(prep(images[idx])), labels[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
            train_s = time.perf_counter() - t0
            model.eval()
            t0 = time.perf_counter()
            n_eval = 0
            with torch.inference_mode():
                for split in (ctx.data.val, ctx.data.test):
                    for i in range(0, len(split), 64):
                        torch.softmax(model(prep(split.images[i: i + 64])), 1)
                        n_eval += len(split.images[i: i + 64])
            eval_s = time.perf_counter() - t0
            return {"train_img_s": args.bare_epochs * n / train_s, "eval_img_s": n_eval / eval_s,
                    "train_s": train_s, "eval_s": eval_s}
        return run

    sides = {"suite_old": suite(old), "suite_new": suite(new), "bare_contiguous": bare(False),
             "bare_channels_last": bare(True)}
    cores = args.cores or threads
    peak = args.peak_gflops_per_core * cores
    print(f"real-tier FT cell, {args.dataset}, Lite0 48 px, batch 32, {threads} torch thread(s), "
          f"forward {fwd / 1e6:.1f} MFLOP/image, training {train_flops / 1e6:.1f} MFLOP/image (3x forward); "
          f"assumed peak {args.peak_gflops_per_core} GFLOP/s per core x {cores}; load {C.load():.1f}")
    for name in ("suite_new", "bare_contiguous", "bare_channels_last"):  # warm-up (allocator, thread pools,
        sides[name](99)  # oneDNN primitives), not measured
    res = C.interleaved(sides, args.repeats)
    bare_best = max(("bare_contiguous", "bare_channels_last"),
                    key=lambda k: C.median([r["train_img_s"] for r in res[k]]))
    rows = []
    for k, v in res.items():
        tr, ev = C.median([r["train_img_s"] for r in v]), C.median([r["eval_img_s"] for r in v])
        rows.append([k, tr, tr * train_flops / 1e9, 100 * tr * train_flops / 1e9 / peak,
                     ev, ev * fwd / 1e9, 100 * ev * fwd / 1e9 / peak])
    print()
    print(C.table(rows, ["side", "train img/s", "train GFLOP/s", "% peak", "eval img/s", "eval GFLOP/s",
                         "% peak"]))
    summary = {
        "new_vs_old_train": C.median(C.ratios(res["suite_new"], res["suite_old"], "train_img_s")),
        "new_vs_old_eval": C.median(C.ratios(res["suite_new"], res["suite_old"], "eval_img_s")),
        "new_vs_old_wall": C.median([o["wall_s"] / n["wall_s"] for o, n in zip(res["suite_old"], res["suite_new"])]),
        f"new_vs_{bare_best}_train": C.median(C.ratios(res["suite_new"], res[bare_best], "train_img_s")),
        f"old_vs_{bare_best}_train": C.median(C.ratios(res["suite_old"], res[bare_best], "train_img_s")),
    }
    print()
    for k, v in summary.items():
        print(f"{k}: {v:.2f}")
    path = C.write("real_cell", {"args": vars(args), "runs": res, "summary": summary, "forward_flops": fwd,
                                 "train_flops_per_image": train_flops, "peak_gflops": peak}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
