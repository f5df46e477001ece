"""The small ViT: ``qsilicon {train,eval} vit`` and ``qsilicon verify vit-layer`` (one linear layer on
the GEMM engine; the whole model on a whole design is ``qsilicon verify vit``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..common import (
    DEFAULT_VIT,
    CliError,
    fashion_mnist_splits,
    progress,
    require_simulator,
    save_atomic,
    simulation_error,
)
from .regress import add_waves_args, check_waves_args, waves_output

__all__ = ["register"]


def cmd_train_vit(args) -> int:
    import torch

    from qsilicon.quant.models.vit import ViT, evaluate, save, train

    if args.epochs < 1:
        raise CliError(f"--epochs must be at least 1, not {args.epochs}")
    x, y, xt, yt = fashion_mnist_splits()
    out = Path(args.output)
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)  # results depend on the thread count; fix it
    model = ViT()
    progress(f"training a {sum(p.numel() for p in model.parameters())}-parameter ViT on Fashion-MNIST "
              f"({args.epochs} epochs, seed {args.seed})")
    train(model, x, y, epochs=args.epochs, seed=args.seed, log=progress)
    acc = evaluate(model, xt, yt)
    save_atomic(save, model, out, {"dataset": "fashion-mnist", "epochs": args.epochs, "seed": args.seed,
                                    "test_accuracy": acc})
    print(f"test accuracy {acc:.2f}% (fp32); checkpoint {out}")
    return 0


def cmd_eval_vit(args) -> int:
    from qsilicon.quant.models.vit import evaluate, fake_quantize, load

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train vit' first")
    if args.ratio8 is not None and args.precision != "mixed":
        raise CliError("--ratio8 goes with --precision mixed")
    ratio8 = 0.5 if args.ratio8 is None else args.ratio8
    if not 0 <= ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {ratio8}")
    x, _, xt, yt = fashion_mnist_splits()
    model, meta = load(args.checkpoint)
    if args.limit:
        xt, yt = xt[: args.limit], yt[: args.limit]
    if args.integer:
        from qsilicon.quant.models.int_vit import IntViT

        if args.precision == "fp32":
            raise CliError("--integer needs a quantized precision: w8a8, w4a8 or mixed")
        acc = IntViT(model, x[:1000], args.precision, ratio8).accuracy(xt, yt)
        kind = "integer-only"
    else:
        acc = evaluate(fake_quantize(model, x[:1000], args.precision, ratio8), xt, yt)
        kind = "fp32" if args.precision == "fp32" else "fake-quant"
    report = {"model": "vit", "checkpoint": str(args.checkpoint), "precision": args.precision,
              "ratio8": ratio8 if args.precision == "mixed" else None, "images": len(xt), "accuracy": acc,
              "kind": kind}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        extra = f" (share of int8 rows {ratio8})" if args.precision == "mixed" else ""
        print(f"vit {args.precision}{extra}: {acc:.2f}% top-1 on {len(xt)} Fashion-MNIST test images "
              f"({report['kind']})")
    return 0


def cmd_verify_vit_layer(args) -> int:
    check_waves_args(args)
    import torch

    from qsilicon.hw.config import GemmConfig
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm
    from qsilicon.sim.runner import SimulationError

    if not 1 <= args.images <= 64:
        raise CliError(f"--images must be from 1 to 64, not {args.images}")
    if args.ratio8 is not None and not 0 <= args.ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {args.ratio8}")
    if args.model:
        from .imported import load_model_dir

        given = [f"--{k}" for k in ("checkpoint", "precision", "ratio8") if getattr(args, k) is not None]
        if given:
            raise CliError(f"{given[0]} goes with a trained ViT checkpoint: an imported model (--model) brings its own "
                           "precision; leave it out")
        md = load_model_dir(args.model)
        iv, (xt, _) = md.int_model(), md.eval_images()
        precision, what = iv.precision, md.name
        if args.images > len(xt):
            raise CliError(f"the model directory keeps {len(xt)} evaluation images, not {args.images}")
    else:
        checkpoint = args.checkpoint or str(DEFAULT_VIT)
        if not Path(checkpoint).exists():
            raise CliError(f"checkpoint {checkpoint} not found: run 'qsilicon train vit' first")
        x, _, xt, _ = fashion_mnist_splits()
        model, _ = load(checkpoint)
        precision, what = args.precision or "w8a8", "vit"
        iv = IntViT(model, x[:1000], precision, 0.5 if args.ratio8 is None else args.ratio8)
    require_simulator(args.sim)
    try:
        iv.linear_layer(args.layer)
    except ValueError as e:
        raise CliError(str(e)) from None
    if args.layer == "head":
        raise CliError("the classifier's int16 logits need the whole accelerator: run 'qsilicon verify vit'")
    cfg = GemmConfig(args.rows, args.cols, 8, 8, True, "dsp2" if args.cols % 2 == 0 else "none",
                     precision == "mixed")
    trace: dict = {}
    iv.logits(xt[: args.images], trace)
    case = iv.gemm_case(args.layer, trace[f"{args.layer}.in"])
    expect = trace[f"{args.layer}.out"].reshape(case.shape[0], case.shape[2])
    progress(f"running layer {args.layer} of the {precision} {what} on {cfg.tag} ({args.sim})")
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        try:
            with waves_output(args, args.sim) as waves:
                res = rtl_gemm(case, cfg, sim=args.sim, log_file=Path(tmp) / "sim.log", waves=waves)
            mismatches = int((res.out.to(torch.int64) != expect).sum())
        except GemmMismatchError as e:
            res, mismatches = e.result, e.result.mismatches
        except SimulationError as e:
            raise simulation_error(e) from None
    m, k, n = case.shape
    report = {"model": what, "layer": args.layer, "precision": precision, "config": cfg.to_dict(),
              "sim": args.sim, "m": m, "k": k, "n": n, "pass": mismatches == 0, "mismatches": mismatches,
              "cycles": res.cycles, "utilization": round(res.utilization, 4)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'PASS' if report['pass'] else 'FAIL'}: {what} layer {args.layer} ({precision}) on {cfg.tag}, "
              f"{args.sim}: {m}x{k}x{n}, {mismatches} mismatches, {res.cycles} cycles")
    return 0 if report["pass"] else 1


def register(sub, groups) -> None:
    tv = groups["train"].add_parser("vit", help="the small ViT on Fashion-MNIST")
    tv.add_argument("--epochs", type=int, default=10)
    tv.add_argument("--seed", type=int, default=0)
    tv.add_argument("-o", "--output", default=str(DEFAULT_VIT), help="checkpoint path")
    tv.set_defaults(func=cmd_train_vit)

    ev = groups["eval"].add_parser("vit", help="the small ViT on the Fashion-MNIST test split")
    ev.add_argument("--precision", choices=("fp32", "w8a8", "w4a8", "mixed"), required=True)
    ev.add_argument("--ratio8", type=float, default=None, help="share of int8 rows per layer for mixed (default 0.5)")
    ev.add_argument("--checkpoint", default=str(DEFAULT_VIT))
    ev.add_argument("--limit", type=int, default=0, help="evaluate on the first N test images only")
    ev.add_argument("--integer", action="store_true",
                    help="run the integer-only model (integer softmax, LayerNorm, GELU) instead of fake-quant")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=cmd_eval_vit)

    vl = groups["verify"].add_parser("vit-layer", help="a linear layer of the trained ViT, on real integer "
                                     "activations, on the RTL")
    vl.add_argument("--layer", required=True, help="embed, head or b<i>.<qkv|proj|fc1|fc2>, e.g. b0.fc1")
    vl.add_argument("--precision", choices=("w8a8", "w4a8", "mixed"), default=None, help="default w8a8")
    vl.add_argument("--ratio8", type=float, default=None, help="share of int8 rows for mixed (default 0.5)")
    vl.add_argument("--images", type=int, default=2, help="test images whose tokens form the rows (default 2)")
    vl.add_argument("--rows", type=int, default=8)
    vl.add_argument("--cols", type=int, default=8)
    vl.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    vl.add_argument("--checkpoint", default=None, help=f"trained ViT checkpoint (default {DEFAULT_VIT})")
    vl.add_argument("--model", help="instead of --checkpoint: an imported, quantized model directory (qsilicon "
                    "import), at its own precision, on its kept evaluation images")
    vl.add_argument("--json", action="store_true")
    add_waves_args(vl)
    vl.set_defaults(func=cmd_verify_vit_layer)
