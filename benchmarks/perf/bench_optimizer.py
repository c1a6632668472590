"""The optimizer step's cost by torch implementation (fused / foreach / loop), per backbone.

One training step is forward + backward + ``opt.step()``; this times the step alone, interleaved across the
implementations, on random-init backbones at 32 px (the smoke tier's shape). It also checks that the three
implementations move the weights the same way (max abs difference after one step, from identical states).

    python benchmarks/perf/bench_optimizer.py                       # vgg19, adam, 3 repeats
    python benchmarks/perf/bench_optimizer.py --backbones resnet50,densenet121,vgg19 --optimizer adamw
"""

from __future__ import annotations

import copy
import time
from typing import Any

import _common as C

IMPLS = ("fused", "foreach", "loop")


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--backbones", default="vgg19")
    p.add_argument("--optimizer", default="adam", choices=("adam", "adamw", "sgd"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed steps per repeat (after one untimed step)")
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    import torch

    from medft_bench.models.factory import create_backbone
    from medft_bench.training.engine import _IMPLS

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[args.optimizer]
    summary: dict[str, Any] = {}
    rows = []
    for name in [b for b in args.backbones.split(",") if b]:
        torch.manual_seed(0)
        model = create_backbone(name, 2, "random").model.to(device)
        x = torch.randn(args.batch_size, 3, args.img_size, args.img_size, device=device)
        y = torch.randint(0, 2, (args.batch_size,), device=device)
        torch.nn.functional.cross_entropy(model(x), y).backward()  # one set of gradients, reused by every step
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        start = copy.deepcopy(model.state_dict())

        def step_time(impl: str, model=model, grads=grads) -> dict[str, Any]:
            opt = cls(model.parameters(), lr=1e-4, **_IMPLS[impl])
            for n, p in model.named_parameters():
                p.grad = grads[n]
            opt.step()  # state allocation: not timed
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return {"step_s": (time.perf_counter() - t0) / args.steps}

        res = C.interleaved({impl: (lambda r, impl=impl: step_time(impl)) for impl in IMPLS}, args.repeats)
        after = {}
        for impl in IMPLS:  # one step from the same weights and gradients
            model.load_state_dict(start)
            opt = cls(model.parameters(), lr=1e-4, **_IMPLS[impl])
            for n, p in model.named_parameters():
                p.grad = grads[n]
            opt.step()
            after[impl] = {n: p.detach().clone() for n, p in model.named_parameters()}
        diff = max(float((after["fused"][n] - after["loop"][n]).abs().max()) for n in after["loop"])
        med = {impl: C.median([r["step_s"] for r in runs]) for impl, runs in res.items()}
        n_params = sum(p.numel() for p in model.parameters())
        summary[name] = {"params": n_params, **{f"{k}_step_s": v for k, v in med.items()},
                         "loop_over_fused": med["loop"] / med["fused"], "max_abs_diff_fused_vs_loop": diff}
        rows.append([name, f"{n_params / 1e6:.1f} M", med["fused"], med["foreach"], med["loop"],
                     med["loop"] / med["fused"], diff])
        del model
    print()
    headers = ["backbone", "params", "fused s", "foreach s", "loop s", "loop / fused", "max |Δw| fused-loop"]
    print(C.table(rows, headers))
    path = C.write("optimizer", {"args": vars(args), "device": str(device), "results": summary}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
