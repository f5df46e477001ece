"""The small ViT and its block accelerator: ``qsilicon {train,eval} vit``, ``qsilicon verify
{vit-layer,vit-block}``, ``qsilicon verilog vit-block``."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..common import (
    DEFAULT_VIT,
    MANIFEST,
    CliError,
    OutputDir,
    fashion_mnist_splits,
    progress,
    require_simulator,
    save_atomic,
    simulation_error,
    write_manifest,
)

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
    import torch

    from qsilicon.hw.config import GemmConfig
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load
    from qsilicon.sim.gemm import GemmMismatchError, rtl_gemm
    from qsilicon.sim.runner import SimulationError

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train vit' first")
    if not 1 <= args.images <= 64:
        raise CliError(f"--images must be from 1 to 64, not {args.images}")
    if not 0 <= args.ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {args.ratio8}")
    require_simulator(args.sim)
    x, _, xt, _ = fashion_mnist_splits()
    model, _ = load(args.checkpoint)
    iv = IntViT(model, x[:1000], args.precision, args.ratio8)
    try:
        iv.linear_layer(args.layer)
    except ValueError as e:
        raise CliError(str(e)) from None
    cfg = GemmConfig(args.rows, args.cols, 8, 8, True, "dsp2" if args.cols % 2 == 0 else "none",
                     args.precision == "mixed")
    trace: dict = {}
    iv.logits(xt[: args.images], trace)
    case = iv.gemm_case(args.layer, trace[f"{args.layer}.in"])
    expect = trace[f"{args.layer}.out"].reshape(case.shape[0], case.shape[2])
    progress(f"running layer {args.layer} of the {args.precision} ViT on {cfg.tag} ({args.sim})")
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        try:
            res = rtl_gemm(case, cfg, sim=args.sim, log_file=Path(tmp) / "sim.log")
            mismatches = int((res.out.to(torch.int64) != expect).sum())
        except GemmMismatchError as e:
            res, mismatches = e.result, e.result.mismatches
        except SimulationError as e:
            raise simulation_error(e) from None
    m, k, n = case.shape
    report = {"model": "vit", "layer": args.layer, "precision": args.precision, "config": cfg.to_dict(),
              "sim": args.sim, "m": m, "k": k, "n": n, "pass": mismatches == 0, "mismatches": mismatches,
              "cycles": res.cycles, "utilization": round(res.utilization, 4)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'PASS' if report['pass'] else 'FAIL'}: vit layer {args.layer} ({args.precision}) on {cfg.tag}, "
              f"{args.sim}: {m}x{k}x{n}, {mismatches} mismatches, {res.cycles} cycles")
    return 0 if report["pass"] else 1


def _vit_block_setup(args):
    """The integer ViT and the residual stream entering ``args.block`` for test image ``args.image``."""
    from qsilicon.quant.models.int_vit import IntViT
    from qsilicon.quant.models.vit import load

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train vit' first")
    if not 0 <= args.ratio8 <= 1:
        raise CliError(f"--ratio8 must be from 0 to 1, not {args.ratio8}")
    x, _, xt, _ = fashion_mnist_splits()
    if not 0 <= args.image < len(xt):
        raise CliError(f"--image must be from 0 to {len(xt) - 1}, not {args.image}")
    model, _ = load(args.checkpoint)
    if not 0 <= args.block < model.cfg.depth:
        raise CliError(f"--block must be from 0 to {model.cfg.depth - 1}, not {args.block}")
    iv = IntViT(model, x[:1000], args.precision, args.ratio8)
    t = iv.embed_tokens(xt[args.image : args.image + 1])
    for i in range(args.block):
        t = iv._block(i, t)
    return iv, t[0]


def cmd_verify_vit_block(args) -> int:
    from qsilicon.hw.vit.program import build_block_program
    from qsilicon.sim.runner import SimulationError
    from qsilicon.sim.vit import rtl_vit_block

    if not 0 < args.ready_p <= 1:
        raise CliError(f"--ready-p must be in (0, 1], not {args.ready_p}")
    require_simulator(args.sim)
    iv, t = _vit_block_setup(args)
    prog = build_block_program(iv, args.block, t, lanes=args.lanes)
    progress(f"running encoder block {args.block} of the {args.precision} ViT on the {args.lanes}-lane accelerator "
              f"({args.sim}, {len(prog.ops)} operations)")
    with tempfile.TemporaryDirectory(prefix="qs-vit-") as tmp:
        try:
            res = rtl_vit_block(prog, sim=args.sim, ready_p=args.ready_p, seed=args.seed,
                                log_file=Path(tmp) / "sim.log")
        except SimulationError as e:
            raise simulation_error(e) from None
    lanes2 = args.lanes * args.lanes
    ops = [{"op": name, "kind": kind, "cycles": c, "macs": prog.macs.get(name, 0),
            "mac_utilization": round(prog.macs.get(name, 0) / (lanes2 * c), 4) if kind == "gemm" else None}
           for name, kind, c in res.op_cycles]
    report = {"model": "vit", "block": args.block, "precision": args.precision, "image": args.image,
              "lanes": args.lanes, "sim": args.sim, "pass": res.ok, "mismatches": res.mismatches,
              "cycles": res.cycles, "ops": ops}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'op':<10} {'unit':<10} {'cycles':>7} {'MACs':>8} {'MAC util':>8}")
        for o in ops:
            util = f"{100 * o['mac_utilization']:.1f}%" if o["mac_utilization"] is not None else ""
            print(f"{o['op']:<10} {o['kind']:<10} {o['cycles']:>7} {o['macs'] or '':>8} {util:>8}")
        bad = {k: v for k, v in res.mismatches.items() if v}
        print(f"{'PASS' if res.ok else 'FAIL'}: vit block {args.block} ({args.precision}, image {args.image}) on "
              f"{args.sim}: {len(res.mismatches)} intermediates, "
              + (f"mismatches in {bad}" if bad else "all equal to the integer model")
              + f"; {res.cycles} cycles ({res.cycles / 1e5:.2f} ms at 100 MHz)")
    return 0 if res.ok else 1


def cmd_verilog_vit_block(args) -> int:
    from qsilicon.hw.vit.engine import DESC_BYTES, REGS
    from qsilicon.sim.vit import vit_block_verilog

    out = OutputDir(args.output)
    with out as tmp:
        progress(f"elaborating the {args.lanes}-lane ViT block accelerator")
        (tmp / "vit_block.v").write_text(vit_block_verilog(args.lanes))
        write_manifest(tmp, {"component": "vit-block", "lanes": args.lanes,
                             "axi4_master": {"prefix": "m_axi__", "data_bits": 8 * args.lanes, "addr_bits": 32},
                             "axi4_lite_slave": {"prefix": "s_axil__", "registers": REGS}, "irq": "irq",
                             "descriptor_bytes": DESC_BYTES, "files": ["vit_block.v"]})
    print(f"wrote vit_block.v and {MANIFEST} to {out.target}")
    return 0


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

    vv = groups["verilog"].add_parser("vit-block", help="the ViT encoder-block accelerator (AXI4 master, "
                                      "AXI4-Lite registers)")
    vv.add_argument("--lanes", type=int, choices=(8, 16), default=8, help="MAC array side and vector lanes")
    vv.add_argument("-o", "--output", required=True, help="output directory")
    vv.set_defaults(func=cmd_verilog_vit_block)

    vl = groups["verify"].add_parser("vit-layer", help="a linear layer of the trained ViT, on real integer "
                                     "activations, on the RTL")
    vl.add_argument("--layer", required=True, help="embed, head or b<i>.<qkv|proj|fc1|fc2>, e.g. b0.fc1")
    vl.add_argument("--precision", choices=("w8a8", "w4a8", "mixed"), default="w8a8")
    vl.add_argument("--ratio8", type=float, default=0.5, help="share of int8 rows for mixed (default 0.5)")
    vl.add_argument("--images", type=int, default=2, help="test images whose tokens form the rows (default 2)")
    vl.add_argument("--rows", type=int, default=8)
    vl.add_argument("--cols", type=int, default=8)
    vl.add_argument("--sim", choices=("icarus", "verilator"), default="verilator")
    vl.add_argument("--checkpoint", default=str(DEFAULT_VIT))
    vl.add_argument("--json", action="store_true")
    vl.set_defaults(func=cmd_verify_vit_layer)

    vb = groups["verify"].add_parser("vit-block", help="a whole encoder block of the trained ViT on the "
                                     "block accelerator's RTL")
    vb.add_argument("--block", type=int, required=True, help="encoder block index, from 0")
    vb.add_argument("--precision", choices=("w8a8", "w4a8", "mixed"), default="w8a8")
    vb.add_argument("--ratio8", type=float, default=0.5, help="share of int8 rows for mixed (default 0.5)")
    vb.add_argument("--image", type=int, default=0, help="index of the Fashion-MNIST test image (default 0)")
    vb.add_argument("--lanes", type=int, choices=(8, 16), default=8, help="MAC array side and vector lanes")
    vb.add_argument("--sim", choices=("verilator",), default="verilator",
                    help="verilator (Icarus did not finish one block of this design in 15 minutes)")
    vb.add_argument("--ready-p", type=float, default=1.0,
                    help="probability that the memory model takes or returns a beat in a cycle (default 1)")
    vb.add_argument("--seed", type=int, default=0)
    vb.add_argument("--checkpoint", default=str(DEFAULT_VIT))
    vb.add_argument("--json", action="store_true")
    vb.set_defaults(func=cmd_verify_vit_block)
