"""QuartDepth PTQ ablation on the depth network (README table).

    python bench/ptq_depth.py [--calib 256] [--test 300] [--abits 4 8]

For W4A4 and W4A8 (first and last layers W8A8): FP32, RTN, percentile clipping, +activation
polishing, +activation compensation, +weight reconstruction (GPTQ: the ``quartdepth`` method; and
Fisher-weighted AdaRound as the alternative), and PyTorch's FX PTQ flow as the library baseline.
Metrics on the synthetic RGB-D test scenes (median-aligned AbsRel, RMSE, delta1) and on the two real
Middlebury images (Motorcycle, Aloe: AbsRel).  The ``quartdepth`` W4A4 model is also exported to
integers and run by the integer reference: its metrics and its largest difference from the
fake-quant depth (in output LSBs) are reported.  Prints a table and writes
``bench/results/ptq_depth.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from qsilicon.quant.depth_data import aloe, depth_split, motorcycle
from qsilicon.quant.models.depthnet import depth_metrics, load_depth
from qsilicon.quant.ptq import fold_depthnet, method_config, quantize_graph
from qsilicon.quant.ptq.export import OUT_SCALE, export_graph
from qsilicon.quant.ptq.torch_baseline import torch_fx_ptq

ROOT = Path(__file__).resolve().parents[1]
ROWS = ["rtn", "percentile", "polish", "compensate", "quartdepth", "quartdepth-ada"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def metrics(f, sets) -> dict:
    out = {}
    for name, (x, d) in sets.items():
        pred = torch.cat([f(x[i : i + 100]).exp().float() for i in range(0, len(x), 100)])
        m = depth_metrics(pred, d)
        out[name] = {k: round(v, 5) if isinstance(v, float) else v for k, v in m.items()}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "depth_synth.pt"))
    ap.add_argument("--calib", type=int, default=256)
    ap.add_argument("--test", type=int, default=300)
    ap.add_argument("--abits", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "ptq_depth.json"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, _ = load_depth(args.checkpoint)
    xc, dc = depth_split("calib", args.calib, progress=log)
    xt, dt = depth_split("test", args.test, progress=log)
    sets = {"synthetic": (xt, dt), "motorcycle": motorcycle(), "aloe": aloe()}
    nodes = fold_depthnet(model)
    result = {"checkpoint": Path(args.checkpoint).name, "calib_scenes": args.calib, "test_scenes": args.test,
              "precision": "hidden layers W4A{abits}; first and last layers W8A8", "fp32": metrics(model, sets),
              "rows": {}}
    log(f"fp32: {result['fp32']['synthetic']}")
    for abits in args.abits:
        rows = {}
        for name in ROWS:
            if name == "polish" and abits == 8:
                continue  # polishing is a 4-bit method: identical to rtn at 8 bits
            t0 = time.perf_counter()
            qg = quantize_graph(nodes, xc, dc, method_config(name, 4, abits))
            rows[name] = {"seconds": round(time.perf_counter() - t0, 1), **metrics(qg, sets)}
            log(f"W4A{abits} {name}: {rows[name]['synthetic']} ({rows[name]['seconds']} s)")
            if name == "quartdepth" and abits == 4:
                ig = export_graph(qg)
                li = ig.log_depth(xt)
                fq = torch.cat([qg(xt[i : i + 100]) for i in range(0, len(xt), 100)])
                diff = (fq / OUT_SCALE - li / OUT_SCALE).abs()
                result["integer_check"] = {
                    "max_lsb": round(float(diff.max()), 4), "out_scale": OUT_SCALE,
                    "integer_metrics": metrics(lambda x, ig=ig: ig.log_depth(x), {"synthetic": (xt, dt)})}
                log(f"integer export: {result['integer_check']}")
        t0 = time.perf_counter()
        tm = torch_fx_ptq(model, xc, 4, abits)
        rows["torch-fx"] = {"seconds": round(time.perf_counter() - t0, 1), **metrics(tm, sets)}
        log(f"W4A{abits} torch-fx: {rows['torch-fx']['synthetic']}")
        result["rows"][f"W4A{abits}"] = rows
        fp, rtn, full = (result["fp32"]["synthetic"]["abs_rel"], rows["rtn"]["synthetic"]["abs_rel"],
                         rows["quartdepth"]["synthetic"]["abs_rel"])
        gap = round((rtn - full) / (rtn - fp), 4) if rtn > fp else None
        result.setdefault("gap_recovered", {})[f"W4A{abits}"] = gap
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print("| precision | method | AbsRel | RMSE (m) | delta1 | Motorcycle AbsRel | Aloe AbsRel |")
    print("|---|---|---|---|---|---|---|")
    f = result["fp32"]
    print(f"| FP32 | - | {f['synthetic']['abs_rel']:.4f} | {f['synthetic']['rmse']:.3f} | "
          f"{f['synthetic']['delta1']:.4f} | {f['motorcycle']['abs_rel']:.4f} | {f['aloe']['abs_rel']:.4f} |")
    for p, rows in result["rows"].items():
        for name, r in rows.items():
            print(f"| {p} | {name} | {r['synthetic']['abs_rel']:.4f} | {r['synthetic']['rmse']:.3f} | "
                  f"{r['synthetic']['delta1']:.4f} | {r['motorcycle']['abs_rel']:.4f} | {r['aloe']['abs_rel']:.4f} |")
    print(f"gap RTN -> FP32 recovered by quartdepth (AbsRel): {result['gap_recovered']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
