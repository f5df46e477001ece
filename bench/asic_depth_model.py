"""Calibrate the depth engine's ASIC cost model (``qsilicon.search.depth_asic``) on the flow.

    python bench/asic_depth_model.py [--jobs 2] [--clock 100]

Maps engine configurations (``max_width`` 64, default buffers) to OSU 0.18 um with Yosys and
times and powers each with OpenSTA (typical corner, default activity), fits the logic and
flip-flop area and the logic power over the model's features on the calibration set, and reports
the error of every configuration, the held-out ones included (they are not in the fit).  Checks
that the memories the mapping makes are the macros the model assumes.  Writes the model to
``search/data/depth_asic_osu018.json`` and the table to ``bench/results/asic_depth_model.json``.
Cold: about 10 minutes of Yosys per configuration (``--jobs`` side by side); cached after.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (co, px, packing): fitted
CALIBRATION = ((4, 4, "none"), (8, 4, "none"), (16, 4, "none"), (16, 8, "none"),
               (4, 4, "nibble"), (16, 4, "nibble"), (4, 8, "nibble"))
#: (co, px, packing): mapped and compared, not fitted (inside the calibrated range)
HELD_OUT = ((8, 4, "nibble"), (8, 8, "nibble"))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure(spec: tuple, clock_mhz: float) -> dict:
    from qsilicon.hw.asic import asic_synthesize, run_sta
    from qsilicon.hw.depth.engine import DepthEngine
    from qsilicon.hw.depth.isa import EngineConfig

    co, px, packing = spec
    cfg = EngineConfig(co=co, px=px, max_width=64, packing=packing)
    t0 = time.time()
    net = asic_synthesize(DepthEngine(cfg), "depth_engine", "osu018", clock_mhz)
    sta = run_sta(net)
    shapes = {m["memory"]: (m["depth"], m["width"], m["read_ports"]) for m in net.macros}
    if shapes != cfg.sram_shapes():
        raise SystemExit(f"{cfg.tag}: the mapping made memories {shapes}, the model assumes {cfg.sram_shapes()}")
    return {"tag": cfg.tag, "config": cfg.to_dict(), "cells": net.cell_count,
            "logic_um2": net.area_um2["logic"], "flip_flops_um2": net.area_um2["flip_flops"],
            "memories_um2": net.area_um2["memories"], "logic_mw": sta.power_mw["total"], "fmax_mhz": sta.fmax_mhz,
            "critical_path": sta.critical_path, "seconds": round(time.time() - t0, 1), "cached": net.cached}


def compare_with_the_flow(model: dict, graph: str) -> dict:
    """The model's energy per inference of the 64x64 network on the 4-bit engine of
    ``bench/asic_depth.py`` against that bench's measurement (mapped netlist, OpenSTA, RTL cycles)."""
    import torch

    from qsilicon.hw.depth.compiler import compile_graph
    from qsilicon.hw.depth.isa import EngineConfig
    from qsilicon.quant.ptq.export import IntGraph
    from qsilicon.search.depth_asic import engine_cost

    row = json.loads((ROOT / "bench" / "results" / "asic_depth.json").read_text())["rows"]["4-bit"]
    path = Path(graph)
    ig = IntGraph.from_dict(torch.load(path / "int_graph.pt" if path.is_dir() else path, weights_only=True))
    cfg = EngineConfig(**row["engine"])
    cost = engine_cost(compile_graph(ig, cfg, height=64, width=64), model)  # energy per inference: clock-free
    flow_mj = row["energy_per_inference_uj"] / 1e3
    return {"engine": cfg.tag, "model_mj": round(cost.energy_uj["total"] / 1e3, 3),
            "model_cycles": cost.cycles, "flow_mj": round(flow_mj, 3), "flow_cycles": row["rtl_cycles"],
            "model_area_mm2": round(cost.area_mm2, 4), "flow_area_mm2": row["area_mm2"],
            "error": round(cost.energy_uj["total"] / 1e3 / flow_mj - 1, 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--clock", type=float, default=100.0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "asic_depth_model.json"))
    ap.add_argument("--model", help="int_graph.pt of the 64x64 network quantized with quartdepth-u4: also compare the "
                    "model's energy per inference with the flow's measurement in bench/results/asic_depth.json")
    args = ap.parse_args()

    from qsilicon.hw.asic import library
    from qsilicon.hw.depth.isa import EngineConfig
    from qsilicon.search.depth_asic import FEATURES, TARGETS, _linear, fit, memory_area_um2, model_path

    specs = CALIBRATION + HELD_OUT
    log(f"mapping {len(specs)} engines ({args.jobs} at a time)")
    with ProcessPoolExecutor(args.jobs) as pool:
        points = list(pool.map(measure, specs, [args.clock] * len(specs)))
    for p in points:
        log(f"{p['tag']}: {p['cells']} cells, fmax {p['fmax_mhz']} MHz, {p['seconds']} s")
    train = points[: len(CALIBRATION)]
    coefs = fit(train)
    rows = []
    for p, spec in zip(points, specs, strict=True):
        cfg = EngineConfig(**p["config"])
        row = {"tag": p["tag"], "held_out": spec in HELD_OUT, "fmax_mhz": p["fmax_mhz"]}
        for t in TARGETS:
            pred = _linear(coefs[t], cfg)
            row[t] = {"measured": p[t], "model": round(pred, 1), "error": round(pred / p[t] - 1, 4)}
        mem = memory_area_um2(cfg)
        assert abs(mem - p["memories_um2"]) < 1.0, (mem, p["memories_um2"])
        total = p["logic_um2"] + p["flip_flops_um2"] + p["memories_um2"]
        pred_total = row["logic_um2"]["model"] + row["flip_flops_um2"]["model"] + mem
        row["area_um2"] = {"measured": round(total, 1), "model": round(pred_total, 1),
                           "error": round(pred_total / total - 1, 4)}
        rows.append(row)
    fmax = min(p["fmax_mhz"] for p in points)
    model = {"library": "osu018", "corner": library("osu018").to_dict(), "clock_mhz": args.clock, "fmax_mhz": fmax,
             "features": list(FEATURES), "coefficients": coefs,
             "logic_power": "OpenSTA report_power at the default activity (0.1 transitions per cycle on every input, "
                            "duty 0.5, propagated), mW at clock_mhz",
             "calibration": [p["tag"] for p in train], "held_out": [r["tag"] for r in rows if r["held_out"]],
             "max_held_out_error": {t: max(abs(r[t]["error"]) for r in rows if r["held_out"])
                                    for t in (*TARGETS, "area_um2")},
             "source": "bench/asic_depth_model.py"}
    check = compare_with_the_flow(model, args.model) if args.model else None
    tmp = model_path("osu018").with_suffix(".tmp")
    tmp.write_text(json.dumps(model, indent=2) + "\n")
    tmp.replace(model_path("osu018"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"model": model, "rows": rows, "points": points, "against_the_flow": check},
                                         indent=2) + "\n")
    print(f"{'engine':<22} {'fit':>4} {'logic um2 (err)':>22} {'flip-flops um2 (err)':>22} {'logic mW (err)':>18} "
          f"{'area mm2 (err)':>18} {'fmax':>6}")
    for r in rows:
        print(f"{r['tag']:<22} {'no' if r['held_out'] else 'yes':>4} "
              + " ".join(f"{r[t]['measured'] / (1e6 if t == 'area_um2' else 1):>12.{4 if t == 'area_um2' else 1}f} "
                         f"({r[t]['error']:+.1%})" for t in (*TARGETS, "area_um2"))
              + f" {r['fmax_mhz']:>6.1f}")
    print(f"fmax (lowest): {fmax} MHz; held-out worst errors: "
          + ", ".join(f"{k} {v:.1%}" for k, v in model["max_held_out_error"].items()))
    if check:
        print(f"{check['engine']} on the 64x64 network: model {check['model_mj']} mJ per inference "
              f"({check['model_cycles']} predicted cycles) against the flow's "
              f"{check['flow_mj']} mJ ({check['flow_cycles']} RTL cycles): {check['error']:+.1%}")
    print(f"wrote {model_path('osu018')} and {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
