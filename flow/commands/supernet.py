"""The Quasar-ViT supernet: ``qsilicon supernet {train,eval,export}``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..common import (
    DEFAULT_SUPERNET,
    DEFAULT_VIT,
    CliError,
    OutputDir,
    Parser,
    fashion_mnist_splits,
    progress,
    save_atomic,
    write_manifest,
)

__all__ = ["load_supernet_arg", "register", "space_arg", "subnet_arg"]


def space_arg(path):
    from qsilicon.quant.supernet import SearchSpace

    if path is None:
        return SearchSpace()
    if not Path(path).exists():
        raise CliError(f"search space file {path} not found")
    try:
        return SearchSpace.from_yaml(path)
    except Exception as e:  # yaml errors and our own ValueErrors: one line
        raise CliError(f"{path}: {str(e).splitlines()[0]}") from None


def load_supernet_arg(path):
    from qsilicon.quant.supernet import load_supernet

    if not Path(path).exists():
        raise CliError(f"supernet checkpoint {path} not found: run 'qsilicon supernet train' first")
    return load_supernet(path)


def subnet_arg(spec, space):
    from qsilicon.quant.supernet import Subnet

    try:
        return Subnet.parse(spec, space)
    except ValueError as e:
        raise CliError(str(e)) from None


def cmd_supernet_train(args) -> int:
    import torch

    from qsilicon.quant.models.vit import load
    from qsilicon.quant.supernet import SuperViT, save_supernet, train_supernet

    if not 0 < args.epochs <= 100:
        raise CliError(f"--epochs must be in (0, 100], not {args.epochs}")
    space = space_arg(args.space)
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sv = SuperViT(space, entangle=not args.no_entangle, layer_scale=not args.no_layer_scale)
    init = "random"
    if args.init not in (None, "none"):
        if not Path(args.init).exists():
            raise CliError(f"--init checkpoint {args.init} not found: run 'qsilicon train vit' first")
        try:
            sv.load_vit(load(args.init)[0])
        except ValueError as e:
            raise CliError(f"--init {args.init}: {e} (use --init none to start from random weights)") from None
        init = str(args.init)
    x, y, xt, yt = fashion_mnist_splits()
    progress(f"training the supernet ({args.epochs} epochs, sandwich rule with {args.random} random subnets, "
              f"entanglement {'on' if sv.entangle else 'off'}, layer scaling {'on' if sv.layer_scale else 'off'})")
    stats = train_supernet(sv, x, y, epochs=args.epochs, seed=args.seed, n_random=args.random, log=progress)
    acc = {name: sv.accuracy(getattr(space, name)(), xt, yt) for name in ("largest", "smallest")}
    meta = {"dataset": "fashion-mnist", "epochs": args.epochs, "seed": args.seed, "init": init,
            "random_subnets": args.random, "seconds": round(stats["seconds"], 1), "test_accuracy": acc}
    save_atomic(save_supernet, sv, args.output, meta)
    print(f"supernet: largest {acc['largest']:.2f}%, smallest {acc['smallest']:.2f}% on {len(xt)} test images; "
          f"{stats['seconds']:.0f} s; saved {args.output}")
    return 0


def cmd_supernet_eval(args) -> int:
    sv, meta = load_supernet_arg(args.checkpoint)
    s = subnet_arg(args.subnet, sv.space)
    _, _, xt, yt = fashion_mnist_splits()
    if args.limit < 0:
        raise CliError(f"--limit must be 0 (all) or positive, not {args.limit}")
    if args.limit:
        xt, yt = xt[: args.limit], yt[: args.limit]
    acc = sv.accuracy(s, xt, yt)
    report = {"subnet": s.spec, "images": len(xt), "accuracy": acc, "checkpoint": str(args.checkpoint)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"subnet {s.spec}: {acc:.2f}% top-1 on {len(xt)} Fashion-MNIST test images (inherited weights, "
              "fake-quant)")
    return 0


def cmd_supernet_export(args) -> int:
    import torch

    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import evaluate, fake_quantize, save
    from qsilicon.quant.supernet import export_subnet

    sv, _ = load_supernet_arg(args.checkpoint)
    s = subnet_arg(args.subnet, sv.space)
    out = OutputDir(args.output)
    x, _, xt, yt = fashion_mnist_splits()
    ex = export_subnet(sv, s)
    iv = IntViT(ex.model, x[:1000], "mixed", weights=ex.weights)
    xs, ys = xt[: args.check_images], yt[: args.check_images]
    fq = evaluate(fake_quantize(ex.model, x[:1000], "mixed", keep_weights=True), xs, ys)
    integer = iv.accuracy(xs, ys)
    with out as tmp:
        save(ex.model, tmp / "vit.pt", {"subnet": s.spec, "from": str(args.checkpoint)})
        torch.save({name: {"q": q.to(torch.int8), "scale": sc, "bits": b.to(torch.int8)}
                    for name, (q, sc, b) in ex.weights.items()}, tmp / "int_weights.pt")
        layers = {name: {"rows": int(b.numel()), "int8_rows": int((b == 8).sum())}
                  for name, (_, _, b) in ex.weights.items()}
        manifest = {"component": "supernet-subnet", "subnet": s.spec,
                    "config": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in ex.model.cfg.__dict__.items()},
                    "layers": layers, "check": {"images": len(xs), "fake_quant": fq, "integer_only": integer},
                    "files": ["int_weights.pt", "vit.pt"]}
        write_manifest(tmp, manifest)
    print(f"exported {s.spec} to {out.target}: fake-quant {fq:.2f}%, integer-only {integer:.2f}% on {len(xs)} "
          "test images")
    return 0


def register(sub, groups) -> None:
    sn = sub.add_parser("supernet", help="the Quasar-ViT supernet: train, evaluate or export subnets")
    sns = sn.add_subparsers(dest="action", required=True, parser_class=Parser)
    st = sns.add_parser("train", help="train the supernet (sandwich rule, in-place distillation)")
    st.add_argument("--epochs", type=float, default=6)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--random", type=int, default=2, help="random subnets per step besides largest and smallest")
    st.add_argument("--space", default=None, help="search-space YAML (default: configs/vit_space.yaml's values)")
    st.add_argument("--init", default=str(DEFAULT_VIT),
                    help="start from this trained ViT (the largest subnet's shape); 'none' for random weights")
    st.add_argument("--no-layer-scale", action="store_true", help="ablation: no learned residual-branch scales")
    st.add_argument("--no-entangle", action="store_true",
                    help="ablation: int4 rows get their own weight copy instead of sharing the int8 rows' weights")
    st.add_argument("-o", "--output", default=str(DEFAULT_SUPERNET))
    st.set_defaults(func=cmd_supernet_train)
    se = sns.add_parser("eval", help="accuracy of a subnet with inherited weights")
    se.add_argument("--subnet", required=True, help="largest, smallest or depth=..,dim=..,heads=..,mlp=..,r8=..")
    se.add_argument("--checkpoint", default=str(DEFAULT_SUPERNET))
    se.add_argument("--limit", type=int, default=0, help="first N test images only")
    se.add_argument("--json", action="store_true")
    se.set_defaults(func=cmd_supernet_eval)
    sx = sns.add_parser("export", help="a subnet as a ViT checkpoint plus its integer weights, checked")
    sx.add_argument("--subnet", required=True)
    sx.add_argument("--checkpoint", default=str(DEFAULT_SUPERNET))
    sx.add_argument("--check-images", type=int, default=2000)
    sx.add_argument("-o", "--output", required=True)
    sx.set_defaults(func=cmd_supernet_export)
