"""Supernet figures for the README: the ablation, the accuracy range and the ranking check.

    python bench/supernet.py [--epochs 6] [--ablation-epochs 3] [--subnets 10]

1. Trains the supernet (entanglement and layer scaling on) from the trained ViT, saves it as
   ``checkpoints/supernet_fmnist.pt``, and evaluates the largest, the smallest and ``--subnets``
   random subnets (inherited weights, 10,000 test images).
2. Ablation at ``--ablation-epochs``: full, without layer scaling, without mixed-precision
   entanglement; largest / smallest / mean of the same random subnets.
3. Ranking: each random subnet fine-tuned alone for ``--finetune-steps`` steps from the supernet's
   weights; Kendall's tau between inherited and fine-tuned accuracy.

Prints a summary and writes ``bench/results/supernet.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from pathlib import Path

import torch

from qsilicon.quant.datasets import fashion_mnist
from qsilicon.quant.models.vit import load
from qsilicon.quant.supernet import SearchSpace, SuperViT, kendall_tau, save_supernet, train_supernet

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def trained(space, x, y, epochs, seed, **kw):
    torch.manual_seed(seed)
    sv = SuperViT(space, **kw)
    sv.load_vit(load(ROOT / "checkpoints" / "vit_fmnist.pt")[0])
    stats = train_supernet(sv, x, y, epochs=epochs, seed=seed, log=log)
    return sv, stats["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--ablation-epochs", type=float, default=3)
    ap.add_argument("--subnets", type=int, default=10)
    ap.add_argument("--finetune-steps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    space = SearchSpace()
    x, y = fashion_mnist("train")
    xt, yt = fashion_mnist("test")
    rng = random.Random(1234)
    subnets = [space.sample(rng) for _ in range(args.subnets)]
    out: dict = {"space": space.to_dict(), "epochs": args.epochs, "ablation_epochs": args.ablation_epochs}

    log(f"== supernet, {args.epochs} epochs")
    sv, secs = trained(space, x, y, args.epochs, args.seed)
    save_supernet(sv, ROOT / "checkpoints" / "supernet_fmnist.pt",
                  {"dataset": "fashion-mnist", "epochs": args.epochs, "seed": args.seed, "init": "vit_fmnist.pt",
                   "random_subnets": 2, "seconds": round(secs, 1)})
    inherited = [sv.accuracy(s, xt, yt) for s in subnets]
    out["main"] = {"train_seconds": round(secs, 1), "largest": sv.accuracy(space.largest(), xt, yt),
                   "smallest": sv.accuracy(space.smallest(), xt, yt),
                   "subnets": [{"spec": s.spec, "inherited": a} for s, a in zip(subnets, inherited, strict=True)]}
    log(f"largest {out['main']['largest']:.2f}, smallest {out['main']['smallest']:.2f}, "
        f"random {min(inherited):.2f}..{max(inherited):.2f}")

    log("== ranking: fine-tune each subnet alone")
    tuned = []
    for s in subnets:
        m = copy.deepcopy(sv)
        t0 = time.perf_counter()
        train_supernet(m, x, y, epochs=args.finetune_steps / 469, seed=args.seed + 1, lr=3e-4, subnets=[s],
                       log=lambda *_: None)
        tuned.append(m.accuracy(s, xt, yt))
        log(f"  {s.spec}: inherited {inherited[len(tuned) - 1]:.2f} -> tuned {tuned[-1]:.2f} "
            f"({time.perf_counter() - t0:.0f} s)")
    for row, a in zip(out["main"]["subnets"], tuned, strict=True):
        row["finetuned"] = a
    out["kendall_tau"] = kendall_tau(inherited, tuned)
    log(f"Kendall tau {out['kendall_tau']:.3f}")

    log(f"== ablation, {args.ablation_epochs} epochs each")
    out["ablation"] = {}
    for name, kw in (("full", {}), ("no layer scaling", {"layer_scale": False}),
                     ("no mixed-precision entanglement", {"entangle": False})):
        m, secs = trained(space, x, y, args.ablation_epochs, args.seed, **kw)
        accs = [m.accuracy(s, xt, yt) for s in subnets]
        out["ablation"][name] = {"largest": m.accuracy(space.largest(), xt, yt),
                                 "smallest": m.accuracy(space.smallest(), xt, yt),
                                 "random_mean": sum(accs) / len(accs), "train_seconds": round(secs, 1)}
        log(f"  {name}: {out['ablation'][name]}")

    res = ROOT / "bench" / "results"
    res.mkdir(parents=True, exist_ok=True)
    (res / "supernet.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("kendall_tau", "ablation")}, indent=2))
    print(f"largest {out['main']['largest']:.2f}%, smallest {out['main']['smallest']:.2f}%")


if __name__ == "__main__":
    main()
