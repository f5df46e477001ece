"""The GEMM engine's clock by requantizer depth (3, 4, 5 stages): nextpnr's routed fmax on the
ULX3S (ECP5 LFE5U-85F, speed 6) and OpenSTA's fmax and area on the OSU 0.18 um cells, every design
run bit-exact in RTL at the cycle count the latency model gives.

ECP5: each engine is built in its self-test shell, synthesized by Yosys (``synth_ecp5`` with ``abc
-lut 4``) and placed and routed by nextpnr-ecp5 (the ``yowasp`` wheels, default seed) against the
board's 25 MHz clock constraint; fmax is nextpnr's routed figure for that clock and the critical
path its ``source -> sink``.  ASIC: the engine alone mapped by Yosys and ABC to the OSU 0.18 um
library at 100 MHz (:func:`~qsilicon.hw.asic.asic_synthesize`) and timed by OpenSTA (typical
corner).  Each design runs a 16x32x16 GEMM on Icarus (cocotb, bit-exact against the integer
reference) whose cycles must equal :func:`~qsilicon.search.latency.gemm_cycles`; the time of a
64x64x64 GEMM at fmax follows from that exact count.

Usage: python bench/requant_depth.py [--out bench/results/requant_depth.json] [--quick]
(``--quick``: the 4x4 W4A4 engine on ECP5 and the 2x2 W8A8 engine on standard cells only.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from qsilicon.hw.asic import asic_synthesize, run_sta
from qsilicon.hw.config import REQUANT_STAGES, GemmConfig
from qsilicon.hw.gemm import GemmEngine
from qsilicon.hw.shell import SelfTestShell
from qsilicon.hw.synth import place_and_route
from qsilicon.quant import random_gemm_case, ref_gemm
from qsilicon.search.latency import gemm_cycles
from qsilicon.sim.gemm import rtl_gemm

ENGINES = [  # GemmConfig arguments less requant_stages
    dict(rows=4, cols=4, wbits=4, abits=4),
    dict(rows=8, cols=8, wbits=8, abits=8),
    dict(rows=4, cols=4, wbits=8, abits=8, packing="none", mixed=True),
]
ASIC_ENGINES = [
    dict(rows=2, cols=2, wbits=8, abits=8),
    dict(rows=4, cols=4, wbits=4, abits=4),
]
RTL_SHAPE = (16, 32, 16)
TIMED_SHAPE = (64, 64, 64)


def rtl_check(cfg: GemmConfig) -> dict:
    """The design on Icarus: bit-exact, and its cycles against the latency model's (exit if not)."""
    m, k, n = RTL_SHAPE
    case = random_gemm_case(m, k, n, wbits=cfg.wbits, abits=cfg.abits, a_signed=cfg.a_signed, seed=7,
                            ratio8=0.5 if cfg.mixed else None)
    n8 = None if case.row_bits is None else int((case.row_bits == 8).sum())
    rtl = rtl_gemm(case, cfg, sim="icarus")
    r = {"rtl_shape": list(RTL_SHAPE), "rtl_cycles": rtl.cycles, "model_cycles": gemm_cycles(cfg, m, k, n, n8),
         "bit_exact": bool(torch.equal(rtl.out, ref_gemm(case).out))}
    if not r["bit_exact"] or r["rtl_cycles"] != r["model_cycles"]:
        raise SystemExit(f"{cfg.tag}: RTL bit-exact {r['bit_exact']}, cycles {r['rtl_cycles']} vs model "
                         f"{r['model_cycles']}")
    return r


def timed(cfg: GemmConfig, fmax_mhz: float) -> dict:
    c = gemm_cycles(cfg, *TIMED_SHAPE, TIMED_SHAPE[2] // 2 if cfg.mixed else None)
    return {"timed_shape": list(TIMED_SHAPE), "timed_cycles": c, "timed_us": round(c / fmax_mhz, 3)}


def measure_ecp5(cfg: GemmConfig) -> dict:
    t0 = time.monotonic()
    pnr = place_and_route(SelfTestShell(GemmEngine(cfg)), "ulx3s")
    pnr_s = time.monotonic() - t0
    return {
        "engine": cfg.tag, "config": cfg.to_dict(), "requant_stages": cfg.requant_stages,
        "fmax_mhz": pnr.fmax_mhz, "constraint_mhz": pnr.target_mhz, "critical_path": pnr.critical_path,
        "lut4": pnr.utilisation.get("TRELLIS_COMB", [0])[0], "ff": pnr.utilisation.get("TRELLIS_FF", [0])[0],
        "mult18": pnr.utilisation.get("MULT18X18D", [0])[0], **rtl_check(cfg), **timed(cfg, pnr.fmax_mhz),
        "pnr_seconds": round(pnr_s, 1), "tool": pnr.tool,
    }


def measure_asic(cfg: GemmConfig) -> dict:
    net = asic_synthesize(GemmEngine(cfg), "gemm_engine", "osu018", 100.0)
    sta = run_sta(net)
    return {
        "engine": cfg.tag, "config": cfg.to_dict(), "requant_stages": cfg.requant_stages, "library": "osu018",
        "fmax_mhz": sta.fmax_mhz, "critical_path": sta.critical_path, "cells": net.cell_count,
        "area_mm2": round(net.area_um2["total"] / 1e6, 4), **rtl_check(cfg), **timed(cfg, sta.fmax_mhz),
    }


def sweep(engines, measure, show) -> list[dict]:
    rows = []
    for kw in engines:
        base = None
        for stages in REQUANT_STAGES:
            r = measure(GemmConfig(**kw, requant_stages=stages))
            base = base or r
            r["fmax_vs_3_stages"] = round(r["fmax_mhz"] / base["fmax_mhz"], 3)
            r["speedup_64cubed_vs_3_stages"] = round(base["timed_us"] / r["timed_us"], 3)
            rows.append(r)
            print(show(r), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/requant_depth.json")
    ap.add_argument("--quick", action="store_true", help="one engine per target")
    args = ap.parse_args()
    print(f"ECP5 (ULX3S): {'engine':<27} {'stages':>6} {'fmax MHz':>8} {'LUT4':>6} {'FF':>6} {'MULT18':>6} "
          f"{'cycles':>7} {'64^3 us':>8}  critical path")
    ecp5 = sweep(ENGINES[:1] if args.quick else ENGINES, measure_ecp5,
                 lambda r: f"{'':<14}{r['engine']:<27} {r['requant_stages']:>6} {r['fmax_mhz']:>8.1f} {r['lut4']:>6} "
                           f"{r['ff']:>6} {r['mult18']:>6} {r['rtl_cycles']:>7} {r['timed_us']:>8.2f}  "
                           f"{r['critical_path']}")
    print(f"OSU 0.18 um:  {'engine':<27} {'stages':>6} {'fmax MHz':>8} {'mm^2':>7} {'cells':>6} {'cycles':>7} "
          f"{'64^3 us':>8}  critical path")
    asic = sweep(ASIC_ENGINES[:1] if args.quick else ASIC_ENGINES, measure_asic,
                 lambda r: f"{'':<14}{r['engine']:<27} {r['requant_stages']:>6} {r['fmax_mhz']:>8.1f} "
                           f"{r['area_mm2']:>7.4f} {r['cells']:>6} {r['rtl_cycles']:>7} {r['timed_us']:>8.2f}  "
                           f"{r['critical_path']}")
    doc = {"ecp5": {"board": "ulx3s", "part": "LFE5U-85F-6BG381C",
                    "flow": "yosys synth_ecp5 (abc -lut 4) + nextpnr-ecp5, 25 MHz constraint", "rows": ecp5},
           "asic": {"library": "osu018 (0.18 um, typical, 1.8 V, 25 C)", "flow": "yosys + abc at 100 MHz, OpenSTA",
                    "rows": asic}}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
