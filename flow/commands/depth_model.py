"""The depth network and its post-training quantization: ``qsilicon data depth``, ``qsilicon
{train,eval,quantize} depth``."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..common import DEFAULT_DEPTH, CliError, OutputDir, progress, save_atomic, write_manifest

__all__ = ["DEPTH_SPLITS", "INT_GRAPH", "depth_split", "load_int_depth", "register"]


DEPTH_SPLITS = {"train": 3000, "calib": 256, "test": 300}


def depth_split(split: str, n: int):
    """A split of the rendered RGB-D scenes, or a one-line error naming the missing package."""
    try:
        from qsilicon.quant.depth_data import depth_split as render

        return render(split, n, progress=progress)
    except ImportError as e:
        raise CliError(str(e)) from None


def cmd_data_depth(args) -> int:
    from qsilicon.quant.depth_data import scene_cache_path

    sizes = {"train": args.train, "calib": args.calib, "test": args.test}
    for split, n in sizes.items():
        if n < 1:
            raise CliError(f"--{split} must be a positive number of scenes, not {n}")
    report = {}
    for split, n in sizes.items():
        progress(f"{split}: {n} scenes")
        x, d = depth_split(split, n)
        valid = d > 0
        report[split] = {"scenes": n, "cache": str(scene_cache_path(split, n)),
                         "valid_pixels": round(float(valid.float().mean()), 4),
                         "depth_min": round(float(d[valid].min()), 3), "depth_max": round(float(d[valid].max()), 3)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for split, r in report.items():
            print(f"{split}: {r['scenes']} synthetic RGB-D scenes (64x64), depth {r['depth_min']}-{r['depth_max']} m, "
                  f"{100 * r['valid_pixels']:.1f}% valid pixels; {r['cache']}")
    return 0


def cmd_train_depth(args) -> int:
    import torch

    from qsilicon.quant.models.depthnet import DepthNet, evaluate_depth, save_depth, train_depth

    if not 1 <= args.epochs <= 200:
        raise CliError(f"--epochs must be from 1 to 200, not {args.epochs}")
    x, d = depth_split("train", args.scenes)
    xt, dt = depth_split("test", DEPTH_SPLITS["test"])
    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model = DepthNet()
    progress(f"training the depth network ({sum(p.numel() for p in model.parameters())} parameters) on "
              f"{len(x)} scenes for {args.epochs} epochs")
    stats = train_depth(model, x, d, epochs=args.epochs, seed=args.seed, log=progress)
    m = evaluate_depth(model, xt, dt)
    meta = {"data": f"synthetic RGB-D, {len(x)} train scenes", "epochs": args.epochs, "seed": args.seed,
            "seconds": round(stats["seconds"], 1), "test": m}
    save_atomic(save_depth, model, args.output, meta)
    print(f"depth: AbsRel {m['abs_rel']:.4f}, RMSE {m['rmse']:.3f} m, delta<1.25 {m['delta1']:.4f} on "
          f"{m['images']} synthetic test scenes (median-aligned); {stats['seconds']:.0f} s; saved {args.output}")
    return 0


def cmd_eval_depth(args) -> int:
    from qsilicon.quant.models.depthnet import evaluate_depth, load_depth

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train depth' first")
    model, _ = load_depth(args.checkpoint)
    if args.quantized:
        model = load_int_depth(args.quantized)
    if not 1 <= args.test <= 100_000:
        raise CliError(f"--test must be from 1 to 100000 scenes, not {args.test}")
    xt, dt = depth_split("test", args.test)
    report = {"synthetic test": evaluate_depth(model, xt, dt)}
    for name, (x, d) in _real_depth_images().items():
        report[name] = evaluate_depth(model, x, d)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name, m in report.items():
            unit = "(relative depth)" if "Aloe" in name else "m"  # Aloe's depth is known up to scale only
            print(f"{name}: AbsRel {m['abs_rel']:.4f}, RMSE {m['rmse']:.3f} {unit}, delta<1.25 {m['delta1']:.4f} "
                  f"({m['images']} images, median-aligned)")
    return 0


def _real_depth_images() -> dict:
    from qsilicon.quant.depth_data import aloe, motorcycle

    out = {"Middlebury Motorcycle": motorcycle()}
    try:
        out["Middlebury Aloe"] = aloe()
    except FileNotFoundError as e:
        raise CliError(str(e)) from None
    return out


INT_GRAPH = "int_graph.pt"


class _IntDepth:
    """An exported integer depth graph as a model returning float log depth (for the metrics)."""

    def __init__(self, ig) -> None:
        self.ig = ig

    def eval(self):
        return self

    def __call__(self, x):
        return self.ig.log_depth(x).float()


def load_int_depth(path):
    import torch

    from qsilicon.quant.ptq.export import IntGraph

    f = Path(path) / INT_GRAPH if Path(path).is_dir() else Path(path)
    if not f.exists():
        raise CliError(f"{f} not found: write one with 'qsilicon quantize depth -o DIR'")
    return _IntDepth(IntGraph.from_dict(torch.load(f, weights_only=True)))


def cmd_quantize_depth(args) -> int:
    import torch

    from qsilicon.quant.models.depthnet import evaluate_depth, load_depth
    from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
    from qsilicon.quant.ptq.export import OUT_SCALE, export_graph

    if not Path(args.checkpoint).exists():
        raise CliError(f"checkpoint {args.checkpoint} not found: run 'qsilicon train depth' first")
    if args.wbits != 4:
        raise CliError(f"--wbits must be 4 (QuartDepth's W4A4 / W4A8), not {args.wbits}")
    if not 1 <= args.calib <= 100_000:
        raise CliError(f"--calib must be from 1 to 100000 scenes, not {args.calib}")
    if not 1 <= args.test <= 100_000:
        raise CliError(f"--test must be from 1 to 100000 scenes, not {args.test}")
    out = OutputDir(args.output) if args.output else None
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    cfg = method_config(args.method, args.wbits, args.abits, seed=args.seed)
    model, _ = load_depth(args.checkpoint)
    xc, dc = depth_split("calib", args.calib)
    xt, dt = depth_split("test", args.test)
    progress(f"quantizing with {args.method} (W{args.wbits}A{args.abits}, first/last layer W8A8) on "
              f"{len(xc)} calibration scenes")
    qg = quantize_graph(fold_depthnet(model), xc, dc, cfg, progress=progress)
    report = {"method": args.method, "precision": f"W{args.wbits}A{args.abits} (first/last layer W8A8)",
              "seconds": round(qg.stats["seconds"], 1), "fp32": {"synthetic test": evaluate_depth(model, xt, dt)},
              "fake_quant": {"synthetic test": evaluate_depth(qg, xt, dt)}}
    for name, (x, d) in _real_depth_images().items():
        report["fp32"][name] = evaluate_depth(model, x, d)
        report["fake_quant"][name] = evaluate_depth(qg, x, d)
    ig = export_graph(qg)
    n_chk = min(len(xt), args.check)
    diff = (qg(xt[:n_chk]) - ig.log_depth(xt[:n_chk])).abs().max() / OUT_SCALE
    report["integer_check"] = {"scenes": n_chk, "max_diff_lsb": round(float(diff), 4), "lsb": OUT_SCALE}
    if float(diff) > 1:
        raise CliError(f"the integer export differs from the fake-quant model by {float(diff):.2f} LSB (> 1): "
                       "a bug, please report it")
    if out is not None:
        with out as tmp:
            torch.save(ig.to_dict(), tmp / INT_GRAPH)
            manifest = {"kind": "quantized depth graph", "checkpoint": str(args.checkpoint),
                        "config": dataclasses.asdict(cfg), **report,
                        "files": [INT_GRAPH]}
            write_manifest(tmp, manifest)
        report["output"] = str(out.target)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for name in report["fp32"]:
            f, q = report["fp32"][name], report["fake_quant"][name]
            print(f"{name}: AbsRel {q['abs_rel']:.4f} (FP32 {f['abs_rel']:.4f}), delta<1.25 {q['delta1']:.4f} "
                  f"(FP32 {f['delta1']:.4f})")
        print(f"integer export: within {report['integer_check']['max_diff_lsb']:.2f} LSB of the fake-quant depth "
              f"on {n_chk} scenes" + (f"; written to {out.target}" if out else ""))
    return 0


def register(sub, groups) -> None:
    ddp = groups["data"].add_parser("depth", help="procedural RGB-D scenes rendered with pybullet (train / calib / "
                                    "test)")
    for split, n in DEPTH_SPLITS.items():
        ddp.add_argument(f"--{split}", type=int, default=n, help=f"{split} scenes (default {n})")
    ddp.add_argument("--json", action="store_true")
    ddp.set_defaults(func=cmd_data_depth)

    td = groups["train"].add_parser("depth", help="the depth network on synthetic RGB-D scenes")
    td.add_argument("--epochs", type=int, default=40)
    td.add_argument("--seed", type=int, default=0)
    td.add_argument("--scenes", type=int, default=DEPTH_SPLITS["train"], help="training scenes")
    td.add_argument("-o", "--output", default=str(DEFAULT_DEPTH), help="checkpoint path")
    td.set_defaults(func=cmd_train_depth)

    qd = groups["quantize"].add_parser("depth", help="the depth network: RTN, percentile or QuartDepth (polish, "
                                       "compensate, reconstruct)")
    from qsilicon.quant.ptq.pipeline import METHODS

    qd.add_argument("--method", choices=tuple(METHODS), required=True)
    qd.add_argument("--wbits", type=int, default=4)
    qd.add_argument("--abits", type=int, choices=(4, 8), required=True)
    qd.add_argument("--checkpoint", default=str(DEFAULT_DEPTH))
    qd.add_argument("--calib", type=int, default=DEPTH_SPLITS["calib"], help="calibration scenes")
    qd.add_argument("--test", type=int, default=DEPTH_SPLITS["test"], help="test scenes")
    qd.add_argument("--check", type=int, default=20, help="test scenes run by the integer model against fake-quant")
    qd.add_argument("--seed", type=int, default=0)
    qd.add_argument("-o", "--output", default=None, help="write the integer graph (int_graph.pt) and a manifest")
    qd.add_argument("--json", action="store_true")
    qd.set_defaults(func=cmd_quantize_depth)

    ed = groups["eval"].add_parser("depth", help="the depth network (or its exported integer model) on the "
                                   "synthetic test scenes, Middlebury Motorcycle and Aloe")
    ed.add_argument("--checkpoint", default=str(DEFAULT_DEPTH))
    ed.add_argument("--quantized", default=None,
                    help="evaluate the integer model exported by 'qsilicon quantize depth -o DIR' instead")
    ed.add_argument("--test", type=int, default=DEPTH_SPLITS["test"], help="synthetic test scenes")
    ed.add_argument("--json", action="store_true")
    ed.set_defaults(func=cmd_eval_depth)
